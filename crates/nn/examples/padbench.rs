//! The circular padding of a convolution's input (issue 22): libtorch's `pad(.., "circular")`
//! against gud's one-pass `circular_pad` and a plain copy of the same tensor, microseconds per
//! call for the activations of the default U-Net at batch 64:
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
        (32, 32),
        (64, 16),
    ] {
        let x = Tensor::randn([64, c, s, s], (Kind::Float, Device::Cpu));
        assert!(circular_pad(&x).equal(&x.pad([1, 1, 1, 1], "circular", None)));
        let reps = (2_000_000 / (c * s * s)).max(20);
        let time = |f: &dyn Fn() -> Tensor| {
            let _ = f();
            let t = Instant::now();
            for _ in 0..reps {
                let _ = f();
            }
            t.elapsed().as_secs_f64() * 1e6 / reps as f64
        };
        let libtorch = time(&|| x.pad([1, 1, 1, 1], "circular", None));
        let gud = time(&|| circular_pad(&x));
        let copy = time(&|| x.copy());
        println!(
            "64 x {c} x {s} x {s}: libtorch pad {libtorch:.1} us, gud circular_pad {gud:.1} us, copy {copy:.1} us"
        );
    }
}
