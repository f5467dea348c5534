//! Full input Jacobians of the U-Net, rows per second, for different ways of sharing the
//! forward pass (what `NeuralScore::eps_jacobian` chooses from, issue 16):
//!
//! ```text
//! cargo run --release -p gud-nn --example jacobian -- SIZE N:R[,N:R ...]
//! ```
//!
//! For each case, N rows are replicated R times (a forward batch of N R images) and d / R
//! backward passes of that one graph give every row's d vector-Jacobian products (replica i of
//! pass j takes the cotangent of output j R + i). R = d is a forward pass per cotangent; R = 1
//! one shared forward pass and d backward passes. Default network, random weights, frozen.

use gud_core::Shape;
use gud_nn::config::NetworkConfig;
use gud_nn::UNet;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: jacobian SIZE N:R[,N:R ...]";
    let mut args = std::env::args().skip(1);
    let size: i64 = args.next().ok_or(usage)?.parse()?;
    let mut cases = Vec::new();
    for case in args.next().ok_or(usage)?.split(',') {
        let (n, r) = case.split_once(':').ok_or(usage)?;
        cases.push((n.parse::<i64>()?, r.parse::<i64>()?));
    }
    gud_nn::set_threads(None);
    let shape = Shape::new(1, size as usize, size as usize);
    let d = size * size;
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let unet = UNet::new(&vs.root(), &NetworkConfig::default(), shape, false)?;
    vs.freeze();
    let float = (Kind::Float, Device::Cpu);
    for (n, r) in cases {
        if n < 1 || !(1..=d).contains(&r) {
            return Err(format!("N >= 1 and 1 <= R <= {d}, got {n}:{r}").into());
        }
        let x = Tensor::randn([n, 1, size, size], float);
        let gamma = Tensor::randn([1, d], float).expand([n * r, d], false);
        let cotangents: Vec<Tensor> = (0..(d + r - 1) / r)
            .map(|j| {
                let c = Tensor::zeros([r, d], float);
                for i in (0..r).filter(|i| j * r + i < d) {
                    let _ = c.get(i).get(j * r + i).fill_(1.0);
                }
                c.view([1, r, 1, size, size])
            })
            .collect();
        let jacobians = || {
            let xs = x
                .repeat_interleave_self_int(r, 0, None)
                .set_requires_grad(true);
            let y = unet.forward(&xs, &gamma).view([n, r, 1, size, size]);
            for (j, c) in cotangents.iter().enumerate() {
                let s = (&y * c).sum(Kind::Float);
                let _ = Tensor::run_backward(&[s], &[&xs], j + 1 < cotangents.len(), false);
            }
        };
        jacobians();
        let start = Instant::now();
        let mut calls = 0;
        while start.elapsed().as_secs_f64() < 4.0 {
            jacobians();
            calls += 1;
        }
        let rate = (calls * n) as f64 / start.elapsed().as_secs_f64();
        println!(
            "{size}x{size} N {n} R {r} (forward batch {}): {rate:.2} rows/s",
            n * r
        );
    }
    Ok(())
}
