//! The U-Net of the `neural` score (SPEC section 4): residual blocks (group norm, SiLU, 3x3
//! convolutions), average-pool down-sampling, nearest up-sampling and skip connections, widths
//! and depth from [`NetworkConfig`]. Circular padding makes every convolution exactly
//! equivariant under lattice translations on the torus; with the pooling in between, the whole
//! network is equivariant under translations by multiples of its total stride 2^(levels-1).
//!
//! Conditioning: the noising state of each sample, as a learned linear embedding of the gamma
//! vector plus sinusoidal features of its mean, through an MLP, added to every residual block.
//! The last convolution starts at zero, so an untrained network is exactly the Gaussian score.
//!
//! Optional global head (`global = true`): an MLP of the site means of x, x^2, x^3 of every
//! input channel and of the embedding adds a constant per output channel: the correction of
//! the zero mode (the magnetisation of a lattice field), a function of global moments that the
//! group norms of the convolutional path normalise away. Its last layer starts at zero too.

use crate::config::{NetworkConfig, Padding};
use crate::{Error, Result};
use gud_core::Shape;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// A 3x3 convolution with the configured padding.
#[derive(Debug)]
struct Conv3 {
    conv: nn::Conv2D,
    circular: bool,
}

impl Conv3 {
    fn new(p: nn::Path, c_in: i64, c_out: i64, padding: Padding, zero: bool) -> Self {
        let circular = padding == Padding::Circular;
        let mut cfg = nn::ConvConfig {
            padding: if circular { 0 } else { 1 },
            ..Default::default()
        };
        if zero {
            cfg.ws_init = nn::Init::Const(0.0);
        }
        Conv3 {
            conv: nn::conv2d(p, c_in, c_out, 3, cfg),
            circular,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        if self.circular {
            self.conv.forward(&circular_pad(x))
        } else {
            self.conv.forward(x)
        }
    }
}

/// `x` (B, C, H, W) padded circularly by one site on each side: (B, C, H + 2, W + 2).
///
/// libtorch's `pad(.., "circular")` makes five strided copies (the interior, then the four
/// halos), each a TensorIterator pass over rows of only W floats: at 8 x 8 it costs 7.7x a
/// plain copy of the tensor, at 32 x 32 1.6x, and its backward is slower still (`cargo run
/// --release -p gud-nn --example padbench`). On the CPU, without gradients (evaluation), the
/// padded tensor is written here in one pass, a padded row at a time; with gradients
/// (training, Jacobians) it is one `index_select` of the flattened sites, whose backward is
/// one `index_add` (forward and backward 2.5-4x faster than `pad`'s). Elsewhere (another
/// device or kind, an empty tensor) `pad`.
pub fn circular_pad(x: &Tensor) -> Tensor {
    let dims = x.size();
    if dims.len() != 4
        || x.kind() != Kind::Float
        || x.device() != tch::Device::Cpu
        || dims.contains(&0)
    {
        return x.pad([1, 1, 1, 1], "circular", None);
    }
    if x.requires_grad() {
        let (h, w) = (dims[2], dims[3]);
        // padded site (i, j) reads site ((i - 1) mod h, (j - 1) mod w)
        let sites: Vec<i64> = (0..h + 2)
            .flat_map(|i| (0..w + 2).map(move |j| ((i + h - 1) % h) * w + (j + w - 1) % w))
            .collect();
        return x
            .reshape([dims[0] * dims[1], h * w])
            .index_select(1, &Tensor::from_slice(&sites))
            .view([dims[0], dims[1], h + 2, w + 2]);
    }
    let x = x.contiguous();
    let (planes, h, w) = (
        (dims[0] * dims[1]) as usize,
        dims[2] as usize,
        dims[3] as usize,
    );
    let (hp, wp) = (h + 2, w + 2);
    let out = Tensor::empty(
        [dims[0], dims[1], dims[2] + 2, dims[3] + 2],
        (Kind::Float, x.device()),
    );
    #[allow(unsafe_code)]
    // SAFETY: `x` is a contiguous CPU f32 tensor of planes * h * w elements and `out` a fresh
    // contiguous CPU f32 tensor of planes * hp * wp, so both pointers are valid for those
    // lengths; `out` was just allocated, so nothing else aliases it, and `x` (kept alive by
    // the binding) is only read while the slices live.
    let (src, dst) = unsafe {
        (
            std::slice::from_raw_parts(x.data_ptr() as *const f32, planes * h * w),
            std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, planes * hp * wp),
        )
    };
    let pad_row = |row: &mut [f32], s: &[f32]| {
        row[0] = s[w - 1];
        for (d, v) in row[1..=w].iter_mut().zip(s) {
            *d = *v;
        }
        row[w + 1] = s[0];
    };
    for (sp, dp) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(hp * wp)) {
        let (top, rest) = dp.split_at_mut(wp);
        let (body, bottom) = rest.split_at_mut(h * wp);
        pad_row(top, &sp[(h - 1) * w..]);
        for (row, s) in body.chunks_exact_mut(wp).zip(sp.chunks_exact(w)) {
            pad_row(row, s);
        }
        pad_row(bottom, &sp[..w]);
    }
    out
}

#[derive(Debug)]
struct ResBlock {
    norm1: nn::GroupNorm,
    conv1: Conv3,
    emb: nn::Linear,
    norm2: nn::GroupNorm,
    conv2: Conv3,
    skip: Option<nn::Conv2D>,
}

impl ResBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, emb: i64, cfg: &NetworkConfig) -> Self {
        let g = cfg.groups as i64;
        ResBlock {
            norm1: nn::group_norm(&p / "norm1", g, c_in, Default::default()),
            conv1: Conv3::new(&p / "conv1", c_in, c_out, cfg.padding, false),
            emb: nn::linear(&p / "emb", emb, c_out, Default::default()),
            norm2: nn::group_norm(&p / "norm2", g, c_out, Default::default()),
            conv2: Conv3::new(&p / "conv2", c_out, c_out, cfg.padding, false),
            skip: (c_in != c_out)
                .then(|| nn::conv2d(&p / "skip", c_in, c_out, 1, Default::default())),
        }
    }

    fn forward(&self, x: &Tensor, emb: &Tensor) -> Tensor {
        let h = self.conv1.forward(&x.apply(&self.norm1).silu());
        let h = h + emb.apply(&self.emb).unsqueeze(-1).unsqueeze(-1);
        let h = self.conv2.forward(&h.apply(&self.norm2).silu());
        match &self.skip {
            Some(s) => h + x.apply(s),
            None => h + x,
        }
    }
}

/// The network: (B, C_in, H, W) images + (B, d) gamma -> (B, C, H, W) correction.
#[derive(Debug)]
pub struct UNet {
    in_conv: Conv3,
    down: Vec<Vec<ResBlock>>,
    mid: ResBlock,
    up: Vec<Vec<ResBlock>>,
    out_norm: nn::GroupNorm,
    out_conv: Conv3,
    gamma_embed: nn::Linear,
    emb1: nn::Linear,
    emb2: nn::Linear,
    embedding: i64,
    global: Option<GlobalHead>,
}

/// The global head: (moments of the input, embedding) -> one constant per output channel.
#[derive(Debug)]
struct GlobalHead {
    l1: nn::Linear,
    l2: nn::Linear,
    out: nn::Linear,
}

impl GlobalHead {
    fn new(p: nn::Path, c_in: i64, c_out: i64, e: i64) -> Self {
        let zero = nn::LinearConfig {
            ws_init: nn::Init::Const(0.0),
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        };
        GlobalHead {
            l1: nn::linear(&p / "l1", 3 * c_in + e, e, Default::default()),
            l2: nn::linear(&p / "l2", e, e, Default::default()),
            out: nn::linear(&p / "out", e, c_out, zero),
        }
    }

    /// `x` (B, C_in, H, W), `emb` (B, e) -> (B, C_out, 1, 1).
    fn forward(&self, x: &Tensor, emb: &Tensor) -> Tensor {
        let mean = |t: &Tensor| t.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
        let x2 = x * x;
        let x3 = &x2 * x;
        let features = Tensor::cat(&[mean(x), mean(&x2), mean(&x3), emb.shallow_clone()], -1);
        features
            .apply(&self.l1)
            .silu()
            .apply(&self.l2)
            .silu()
            .apply(&self.out)
            .unsqueeze(-1)
            .unsqueeze(-1)
    }
}

impl UNet {
    /// Builds the network under `p` for fields of `shape` with `gamma_channel` extra inputs.
    pub fn new(
        p: &nn::Path,
        cfg: &NetworkConfig,
        shape: Shape,
        gamma_channel: bool,
    ) -> Result<Self> {
        check(cfg, shape)?;
        let (c, d) = (shape.c as i64, shape.dim() as i64);
        let c_in = if gamma_channel { 2 * c } else { c };
        let e = cfg.embedding as i64;
        let width = |l: usize| (cfg.width * cfg.multipliers[l]) as i64;
        let mut ch = width(0);
        let in_conv = Conv3::new(p / "in", c_in, ch, cfg.padding, false);
        let mut skips = Vec::new();
        let mut down = Vec::new();
        for l in 0..cfg.multipliers.len() {
            let q = p / "down" / l;
            let mut level = Vec::new();
            for b in 0..cfg.blocks {
                level.push(ResBlock::new(&q / b, ch, width(l), e, cfg));
                ch = width(l);
                skips.push(ch);
            }
            down.push(level);
        }
        let mid = ResBlock::new(p / "mid", ch, ch, e, cfg);
        let mut up = Vec::new();
        for l in (0..cfg.multipliers.len()).rev() {
            let q = p / "up" / l;
            let mut level = Vec::new();
            for b in 0..cfg.blocks {
                let skip = skips.pop().expect("one skip per down block");
                level.push(ResBlock::new(&q / b, ch + skip, width(l), e, cfg));
                ch = width(l);
            }
            up.push(level);
        }
        Ok(UNet {
            in_conv,
            down,
            mid,
            up,
            out_norm: nn::group_norm(p / "out_norm", cfg.groups as i64, ch, Default::default()),
            out_conv: Conv3::new(p / "out", ch, c, cfg.padding, true),
            gamma_embed: nn::linear(p / "gamma_embed", d, e, Default::default()),
            emb1: nn::linear(p / "emb1", 2 * e, e, Default::default()),
            emb2: nn::linear(p / "emb2", e, e, Default::default()),
            embedding: e,
            global: cfg
                .global
                .then(|| GlobalHead::new(p / "global", c_in, c, e)),
        })
    }

    /// The conditioning vector of each sample from its gamma (B, d) (gamma / 10: O(1) inputs).
    fn embed(&self, gamma: &Tensor) -> Tensor {
        let g = gamma / 10.0;
        let mean = g.mean_dim(-1, true, Kind::Float);
        let half = self.embedding / 2;
        // Frequencies from 1 to 1/100 (mean gamma / 10 lies in about [-3, 3]).
        let freqs = (Tensor::arange(half, (Kind::Float, gamma.device()))
            * (-(100f64.ln()) / half as f64))
            .exp()
            .unsqueeze(0);
        let angles = &mean * 10.0 * freqs;
        let sinus = Tensor::cat(&[angles.sin(), angles.cos()], -1);
        let features = Tensor::cat(&[g.apply(&self.gamma_embed), sinus], -1);
        features.apply(&self.emb1).silu().apply(&self.emb2)
    }

    /// The correction NN(x, gamma): `x` (B, C_in, H, W), `gamma` (B, d) -> (B, C, H, W).
    pub fn forward(&self, x: &Tensor, gamma: &Tensor) -> Tensor {
        let emb = self.embed(gamma).silu();
        let mut h = self.in_conv.forward(x);
        let mut skips = Vec::new();
        let levels = self.down.len();
        for (l, level) in self.down.iter().enumerate() {
            for block in level {
                h = block.forward(&h, &emb);
                skips.push(h.shallow_clone());
            }
            if l + 1 < levels {
                h = h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
            }
        }
        h = self.mid.forward(&h, &emb);
        for (i, level) in self.up.iter().enumerate() {
            for block in level {
                let skip = skips.pop().expect("one skip per down block");
                h = block.forward(&Tensor::cat(&[h, skip], 1), &emb);
            }
            if i + 1 < levels {
                let (hh, ww) = (h.size()[2], h.size()[3]);
                h = h.upsample_nearest2d([2 * hh, 2 * ww], None, None);
            }
        }
        let out = self.out_conv.forward(&h.apply(&self.out_norm).silu());
        match &self.global {
            Some(g) => out + g.forward(x, &emb),
            None => out,
        }
    }
}

/// The config must fit the data: groups divide every width, the image halves evenly.
fn check(cfg: &NetworkConfig, shape: Shape) -> Result<()> {
    if cfg.multipliers.is_empty() || cfg.multipliers.contains(&0) {
        return Err(Error::config(
            "network.multipliers",
            "a non-empty list of positive integers",
        ));
    }
    if cfg.width == 0 || cfg.blocks == 0 || cfg.embedding < 2 || !cfg.embedding.is_multiple_of(2) {
        return Err(Error::config(
            "network",
            "width >= 1, blocks >= 1 and an even embedding >= 2",
        ));
    }
    for &m in &cfg.multipliers {
        if cfg.groups == 0 || !(cfg.width * m).is_multiple_of(cfg.groups) {
            return Err(Error::config(
                "network.groups",
                format!(
                    "{} groups must divide every width (width {} x multiplier {m})",
                    cfg.groups, cfg.width
                ),
            ));
        }
    }
    let stride = 1usize << (cfg.multipliers.len() - 1);
    if !shape.h.is_multiple_of(stride) || !shape.w.is_multiple_of(stride) {
        return Err(Error::config(
            "network.multipliers",
            format!(
                "{} levels halve the image {} times: H x W = {} x {} must be divisible by {stride}",
                cfg.multipliers.len(),
                cfg.multipliers.len() - 1,
                shape.h,
                shape.w
            ),
        ));
    }
    Ok(())
}

/// Total stride 2^(levels-1): the translations under which the network is exactly equivariant.
pub fn stride(cfg: &NetworkConfig) -> usize {
    1 << cfg.multipliers.len().saturating_sub(1)
}
