//! A small convolutional classifier of labelled images whose penultimate features give a
//! Frechet distance between generated and real images: a stand-in for Inception FID (not
//! comparable with published FID numbers), comparable across runs when the same saved weights
//! are used.
//!
//! Architecture: three stages of 3x3 convolution (32, 64, 128 channels) + SiLU, the first two
//! followed by 2x2 average pooling (while the image is at least 4 pixels), then a global mean
//! over the image: 128 features; a linear layer gives the class logits. Trained with Adam on
//! cross-entropy, batches drawn from a seeded stream.

use crate::{Error, Result};
use gud_core::{Dataset, Shape};
use rand::seq::SliceRandom;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

const FORMAT: &str = "gud-classifier/1";
const WIDTHS: [i64; 3] = [32, 64, 128];

/// The feature dimension.
pub const FEATURES: usize = 128;

/// A small convolutional image classifier (features for the Frechet distance).
pub struct Classifier {
    vs: nn::VarStore,
    convs: Vec<nn::Conv2D>,
    head: nn::Linear,
    shape: Shape,
    classes: usize,
    /// Accuracy on the held-out images at the end of training.
    pub test_accuracy: f64,
}

/// How a classifier is trained.
#[derive(Debug, Clone, Copy)]
pub struct ClassifierTraining {
    /// AdamW steps.
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Seed.
    pub seed: u64,
}

impl Classifier {
    fn build(shape: Shape, classes: usize, seed: u64) -> Self {
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let mut c_in = shape.c as i64;
        let convs = WIDTHS
            .iter()
            .enumerate()
            .map(|(k, &w)| {
                let cfg = nn::ConvConfig {
                    padding: 1,
                    ..Default::default()
                };
                let conv = nn::conv2d(&root / format!("conv{k}"), c_in, w, 3, cfg);
                c_in = w;
                conv
            })
            .collect();
        let head = nn::linear(
            &root / "head",
            FEATURES as i64,
            classes as i64,
            Default::default(),
        );
        Classifier {
            vs,
            convs,
            head,
            shape,
            classes,
            test_accuracy: f64::NAN,
        }
    }

    /// The image shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    fn features_t(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for (k, conv) in self.convs.iter().enumerate() {
            h = conv.forward(&h).silu();
            let size = h.size();
            if k < 2 && size[2] >= 4 && size[3] >= 4 {
                h = h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
            }
        }
        h.mean_dim([2i64, 3].as_slice(), false, Kind::Float)
    }

    fn images(&self, data: &[f64]) -> Tensor {
        let s = self.shape;
        let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        Tensor::from_slice(&v).view([-1, s.c as i64, s.h as i64, s.w as i64])
    }

    fn check_shape(&self, data: &Dataset) -> Result<()> {
        if data.shape() != self.shape {
            return Err(Error::Config {
                field: "classifier".into(),
                reason: format!(
                    "the classifier takes images of shape {}, these are {}",
                    self.shape,
                    data.shape()
                ),
            });
        }
        Ok(())
    }

    /// Trains on the labelled `train` images; `test` (labelled) gives the reported accuracy.
    /// `progress(step, loss)` is called after every step and stops training when it returns false.
    pub fn train(
        train: &Dataset,
        test: &Dataset,
        opts: &ClassifierTraining,
        progress: &mut dyn FnMut(usize, f64) -> bool,
    ) -> Result<Self> {
        let labels = |d: &Dataset, what: &str| {
            d.labels().map(|l| l.to_vec()).ok_or_else(|| Error::Config {
                field: "data".into(),
                reason: format!("the {what} images carry no labels (IDX labels or class folders)"),
            })
        };
        let (y_train, y_test) = (labels(train, "training")?, labels(test, "held-out")?);
        let classes = y_train
            .iter()
            .chain(&y_test)
            .max()
            .map_or(1, |m| *m as usize + 1);
        let mut model = Self::build(train.shape(), classes, opts.seed);
        model.check_shape(test)?;
        let mut opt = nn::Adam::default().build(&model.vs, opts.lr)?;
        let n = train.len();
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = gud_core::rng::stream(opts.seed, gud_core::rng::Purpose::Classifier, 0);
        let per_epoch = (n / opts.batch.max(1)).max(1);
        for step in 0..opts.steps {
            if step % per_epoch == 0 {
                order.shuffle(&mut rng);
            }
            let idx = &order[(step % per_epoch) * opts.batch..][..opts.batch.min(n)];
            let x: Vec<f64> = idx
                .iter()
                .flat_map(|&i| train.sample(i).iter().copied())
                .collect();
            let y: Vec<i64> = idx.iter().map(|&i| y_train[i] as i64).collect();
            let logits = model.head.forward(&model.features_t(&model.images(&x)));
            let loss = logits.cross_entropy_for_logits(&Tensor::from_slice(&y));
            opt.backward_step(&loss);
            if !progress(step + 1, loss.double_value(&[])) {
                break;
            }
        }
        model.test_accuracy = model.accuracy(test, &y_test);
        Ok(model)
    }

    fn accuracy(&self, data: &Dataset, labels: &[u32]) -> f64 {
        let mut right = 0usize;
        tch::no_grad(|| {
            for (k, chunk) in data.as_slice().chunks(256 * data.dim()).enumerate() {
                let pred = self
                    .head
                    .forward(&self.features_t(&self.images(chunk)))
                    .argmax(1, false);
                let pred = Vec::<i64>::try_from(pred).expect("i64 predictions");
                for (j, p) in pred.iter().enumerate() {
                    right += (*p == labels[k * 256 + j] as i64) as usize;
                }
            }
        });
        right as f64 / data.len() as f64
    }

    /// The 128 features of every image, (n, 128) row-major.
    pub fn features(&self, data: &Dataset) -> Result<Vec<f64>> {
        self.check_shape(data)?;
        let mut out = Vec::with_capacity(data.len() * FEATURES);
        tch::no_grad(|| {
            for chunk in data.as_slice().chunks(256 * data.dim()) {
                let f = self.features_t(&self.images(chunk));
                let f = Vec::<f32>::try_from(f.contiguous().view(-1)).expect("f32 features");
                out.extend(f.iter().map(|&v| v as f64));
            }
        });
        Ok(out)
    }

    /// Writes the weights and metadata (format, shape, classes, accuracy) atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let owned: Vec<(String, Vec<usize>, Vec<u8>)> = vars
            .iter()
            .map(|(n, t)| {
                let v = Vec::<f32>::try_from(t.contiguous().view(-1)).expect("f32 weights");
                let shape = t.size().iter().map(|&s| s as usize).collect();
                (
                    n.clone(),
                    shape,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect();
        let mut views = Vec::new();
        for (name, shape, bytes) in &owned {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map_err(|e| Error::checkpoint(path, format!("tensor {name}: {e}")))?;
            views.push((name.clone(), view));
        }
        let s = self.shape;
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("shape".to_string(), format!("{},{},{}", s.c, s.h, s.w)),
            ("classes".to_string(), self.classes.to_string()),
            ("test_accuracy".to_string(), self.test_accuracy.to_string()),
        ]);
        let bytes = safetensors::tensor::serialize(views, Some(meta))
            .map_err(|e| Error::checkpoint(path, e.to_string()))?;
        gud_io::atomic::write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Reads a classifier written by [`Classifier::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |r: String| Error::checkpoint(path, r);
        let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!(
                "not a gud classifier (format {FORMAT} expected)"
            )));
        }
        let field = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(format!("metadata `{k}` missing")))
        };
        let dims: Vec<usize> = field("shape")?
            .split(',')
            .map(|v| v.parse().map_err(|_| bad("bad metadata `shape`".into())))
            .collect::<Result<_>>()?;
        let [c, h, w] = dims[..] else {
            return Err(bad("metadata `shape` needs C,H,W".into()));
        };
        let classes: usize = field("classes")?
            .parse()
            .map_err(|_| bad("bad metadata `classes`".into()))?;
        let mut model = Self::build(Shape::new(c, h, w), classes, 0);
        model.test_accuracy = field("test_accuracy")?.parse().unwrap_or(f64::NAN);
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        tch::no_grad(|| -> Result<()> {
            for (name, var) in model.vs.variables() {
                let view = st
                    .tensor(&name)
                    .map_err(|_| bad(format!("tensor `{name}` missing")))?;
                let size: Vec<usize> = var.size().iter().map(|&s| s as usize).collect();
                if view.shape() != size.as_slice() || view.dtype() != Dtype::F32 {
                    return Err(bad(format!(
                        "tensor `{name}` has shape {:?}, expected {size:?}",
                        view.shape()
                    )));
                }
                let values: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                var.shallow_clone()
                    .copy_(&Tensor::from_slice(&values).view(var.size().as_slice()));
            }
            Ok(())
        })?;
        Ok(model)
    }
}
