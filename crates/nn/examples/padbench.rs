//! The circular padding of a convolution's input (issue 22): libtorch's `pad(.., "circular")`
//! against gud's `circular_pad`, for the activations of the default U-Net at batch 64, in
//! microseconds per call: without gradients (evaluation; a plain copy of the same tensor for
//! scale) and with them (forward and backward, as in training and the Jacobians of exact
//! sampling; with the zero padding of the convolution itself for scale):
//!
//!     cargo run --release -p gud-nn --example padbench

use gud_nn::unet::circular_pad;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    gud_nn::set_threads(None);
    for (c, s) in [
        (32i64, 8i64),
        (64, 4),
        (32, 16),
        (64, 8),
        (32, 28),
        (32, 32),
        (64, 16),
    ] {
        let x = Tensor::randn([64, c, s, s], (Kind::Float, Device::Cpu));
        let pad = |x: &Tensor| x.pad([1, 1, 1, 1], "circular", None);
        assert!(circular_pad(&x).equal(&pad(&x)));
        let reps = (2_000_000 / (c * s * s)).max(20);
        let time = |f: &dyn Fn() -> Tensor| {
            let _ = f();
            let t = Instant::now();
            for _ in 0..reps {
                let _ = f();
            }
            t.elapsed().as_secs_f64() * 1e6 / reps as f64
        };
        let libtorch = time(&|| pad(&x));
        let gud = time(&|| circular_pad(&x));
        let copy = time(&|| x.copy());
        // with gradients: forward, then backward of a fixed linear function of the output
        let xg = x.set_requires_grad(true);
        let up = Tensor::randn([64, c, s + 2, s + 2], (Kind::Float, Device::Cpu));
        let both = |f: &dyn Fn(&Tensor) -> Tensor| {
            time(&|| {
                let y = (f(&xg) * &up).sum(Kind::Float);
                Tensor::run_backward(&[y], &[&xg], false, false).remove(0)
            })
        };
        let libtorch_g = both(&pad);
        let gud_g = both(&circular_pad);
        let zeros_g = both(&|x| x.constant_pad_nd([1, 1, 1, 1]));
        println!(
            "64 x {c} x {s} x {s}: no gradients: libtorch {libtorch:.1}, gud {gud:.1}, copy \
             {copy:.1} us | forward + backward: libtorch {libtorch_g:.0}, gud {gud_g:.0}, \
             zero padding {zeros_g:.0} us"
        );
    }
}
