//! The U-Net's evaluation without gradients, two ways, interleaved (issue 22): libtorch's own
//! threads inside every operation on chunks of 64 images (what PyTorch eager does), against
//! gud's [`EvalPool`]: one replica per thread, each evaluating whole chunks with one libtorch
//! thread. Samples/s of 256 images, `rounds` times:
//!
//!     cargo run --release -p gud-nn --example par_eval -- SIZE [ROUNDS] [CHUNK]
//!
//! (CHUNK: the pool's images per chunk; `auto_chunk` when not given.)

use gud_core::Shape;
use gud_nn::config::NetworkConfig;
use gud_nn::EvalPool;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let size: i64 = arg(1).map_or(8, |s| s.parse().expect("SIZE"));
    let rounds: usize = arg(2).map_or(3, |s| s.parse().expect("ROUNDS"));
    let chunk: Option<usize> = arg(3).map(|s| s.parse().expect("CHUNK"));
    gud_nn::set_threads(None);
    let threads = tch::get_num_threads() as usize;
    let shape = Shape::new(1, size as usize, size as usize);
    let d = size * size;
    let net = NetworkConfig::default();
    let intra = EvalPool::new(&net, shape, false, Device::Cpu, 1, Some(64)).unwrap();
    let pool = EvalPool::new(&net, shape, false, Device::Cpu, threads, chunk).unwrap();
    let n = 256;
    let xs = Tensor::randn([n, 1, size, size], (Kind::Float, Device::Cpu));
    let gs = Tensor::randn([1, d], (Kind::Float, Device::Cpu)).expand([n, d], false);
    let evals = if size <= 8 { 8 } else { 2 };
    let rate = |p: &EvalPool| {
        let t = Instant::now();
        for _ in 0..evals {
            let _ = p.forward(&xs, &gs);
        }
        (evals * n) as f64 / t.elapsed().as_secs_f64()
    };
    rate(&intra);
    rate(&pool);
    println!(
        "{size}x{size}, {threads} threads: intra-op chunks of 64 | pool of {} workers, chunks of {}",
        pool.workers(),
        pool.chunk()
    );
    for _ in 0..rounds {
        let (a, b) = (rate(&intra), rate(&pool));
        println!("  {a:.0} | {b:.0} samples/s: ratio {:.3}", b / a);
    }
}
