//! The network's evaluation on all cores by data parallelism: one replica of the U-Net per
//! worker thread, each worker evaluating whole chunks of the batch with one libtorch thread.
//!
//! libtorch's own parallelism splits every operation of a forward pass across the cores; with
//! the small tensors of a lattice (8 x 8 to 32 x 32 sites, 32-64 channels) each operation is
//! short, and the threads meet at a barrier after every one of them (OpenMP: 14% of a 32 x 32
//! evaluation's samples on 2 cores). Here the cores share the batch instead: each worker runs
//! whole forward passes of its chunks, no barrier until the end, and a chunk's activations stay
//! in its core's cache. Measured on 2 cores (`cargo run --release -p gud-nn --example
//! par_eval`, samples/s against libtorch's 2 threads on chunks of 64, three alternating rounds
//! each): 8 x 8 1.07-1.33x, 16 x 16 1.04-1.08x, 28 x 28 1.03-1.34x, 32 x 32 1.07-1.30x with
//! [`auto_chunk`]'s chunks; chunks of 64 at 32 x 32 were slower than libtorch's threads (two
//! 9 MB activations side by side no longer fit the caches).
//!
//! Gradients (training, the Jacobians of exact sampling) use replica 0 alone, with libtorch's
//! intra-op threads.

use crate::checkpoint::Named;
use crate::config::NetworkConfig;
use crate::train::sorted_vars;
use crate::unet::UNet;
use crate::Result;
use gud_core::Shape;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// One replica: its variables and the network built on them.
pub(crate) type Replica = (VarStore, UNet);

/// Images per chunk for the data-parallel evaluation: about 2^18 activations of the first
/// level (width x H x W per image), so that a chunk's activations (about 1 MB each) stay in a
/// core's cache; at most 256. With the default width 32: 128 images at 8 x 8, 32 at 16 x 16,
/// 10 at 28 x 28, 8 at 32 x 32 (the measured best of 8-128).
pub fn auto_chunk(network: &NetworkConfig, shape: Shape) -> usize {
    let per_image = (network.width.max(1) * shape.h.max(1) * shape.w.max(1)) as f64;
    ((f64::from(1 << 18) / per_image).round() as usize).clamp(1, 256)
}

/// Replicas of one network (the same weights) and the evaluation that spreads a batch over them.
pub struct EvalPool {
    replicas: Vec<Mutex<Replica>>,
    chunk: usize,
}

impl EvalPool {
    /// `workers` replicas (one on a GPU: its own parallelism is the device's) of a network of
    /// `network`'s architecture for fields of `shape`, its weights frozen after loading;
    /// evaluation in chunks of `chunk` images ([`auto_chunk`] when `None`).
    pub fn new(
        network: &NetworkConfig,
        shape: Shape,
        gamma_channel: bool,
        device: Device,
        workers: usize,
        chunk: Option<usize>,
    ) -> Result<Self> {
        let workers = if device == Device::Cpu {
            workers.max(1)
        } else {
            1
        };
        let replicas = (0..workers)
            .map(|_| {
                let vs = VarStore::new(device);
                let net = UNet::new(&vs.root(), network, shape, gamma_channel)?;
                Ok(Mutex::new((vs, net)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EvalPool {
            replicas,
            chunk: chunk.unwrap_or_else(|| auto_chunk(network, shape)).max(1),
        })
    }

    /// Replica 0 (for the gradient paths and for loading weights).
    pub(crate) fn first(&self) -> MutexGuard<'_, Replica> {
        self.replicas[0].lock().expect("network lock")
    }

    /// Copies replica 0's weights into every other replica and freezes all of them (they are
    /// never trained here: no backward pass computes their gradients).
    pub(crate) fn sync(&self) {
        let first = self.first();
        let src = sorted_vars(&first.0);
        for r in &self.replicas[1..] {
            let r = r.lock().expect("network lock");
            tch::no_grad(|| {
                for ((_, dst), (_, s)) in sorted_vars(&r.0).iter().zip(&src) {
                    dst.shallow_clone().copy_(s);
                }
            });
        }
        drop(first);
        for r in &self.replicas {
            r.lock().expect("network lock").0.freeze();
        }
    }

    /// Sets the weights of every replica (copied; in [`sorted_vars`] order) and freezes them.
    pub(crate) fn set_weights(&self, weights: &Named) {
        {
            let first = self.first();
            tch::no_grad(|| {
                for ((_, dst), (_, src)) in sorted_vars(&first.0).iter().zip(weights) {
                    dst.shallow_clone().copy_(src);
                }
            });
        }
        self.sync();
    }

    /// Sets every weight of every replica to zero.
    pub(crate) fn zero_weights(&self) {
        for r in &self.replicas {
            let r = r.lock().expect("network lock");
            tch::no_grad(|| {
                for (_, v) in sorted_vars(&r.0) {
                    let _ = v.shallow_clone().zero_();
                }
            });
        }
    }

    /// Images per chunk.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Replicas of the network: the most worker threads of [`Self::forward`].
    pub fn workers(&self) -> usize {
        self.replicas.len()
    }

    /// Workers for `items` pieces of work: min(replicas, libtorch's threads, items).
    pub fn workers_for(&self, items: usize) -> usize {
        let threads = tch::get_num_threads().max(1) as usize;
        self.replicas.len().min(threads).min(items).max(1)
    }

    /// Runs `f(network, item)` for every item, spread over `workers` workers (at most the
    /// replicas), each with its own replica and one libtorch thread, taking items in order from
    /// a shared queue; with one worker, all in the calling thread with libtorch's own threads.
    fn run<T: Send>(&self, items: Vec<T>, workers: usize, f: impl Fn(&UNet, T) + Sync) {
        let workers = workers.min(self.replicas.len());
        if workers <= 1 {
            let first = self.first();
            for item in items {
                f(&first.1, item);
            }
            return;
        }
        let threads = tch::get_num_threads().max(1);
        let queue = Mutex::new(VecDeque::from(items));
        let work = |replica: &Mutex<Replica>| {
            // one libtorch thread in this thread (OpenMP's count is per thread)
            tch::set_num_threads(1);
            let r = replica.lock().expect("network lock");
            loop {
                // (the queue's lock is released before the work)
                let Some(item) = queue.lock().expect("queue lock").pop_front() else {
                    break;
                };
                f(&r.1, item);
            }
        };
        // the calling thread is worker 0 (its allocations stay in its own malloc arena)
        std::thread::scope(|s| {
            for replica in &self.replicas[1..workers] {
                let work = &work;
                s.spawn(move || work(replica));
            }
            work(&self.replicas[0]);
        });
        // back to the calling thread's count (also libtorch's default for threads it has not
        // seen yet, which the workers set to 1)
        tch::set_num_threads(threads);
    }

    /// The network's output for `x` (B, C_in, H, W) and `gamma` (B, d), without gradients:
    /// chunks of [`Self::chunk`] images spread over [`Self::workers_for`] workers of one
    /// libtorch thread each (in the calling thread with libtorch's own threads when that is
    /// one).
    pub fn forward(&self, x: &Tensor, gamma: &Tensor) -> Tensor {
        let n = x.size()[0];
        if n == 0 {
            return tch::no_grad(|| self.first().1.forward(x, gamma));
        }
        let chunk = self.chunk as i64;
        let pieces: Vec<(usize, Tensor, Tensor)> = (0..n)
            .step_by(self.chunk)
            .enumerate()
            .map(|(k, at)| {
                let len = chunk.min(n - at);
                (k, x.narrow(0, at, len), gamma.narrow(0, at, len))
            })
            .collect();
        let count = pieces.len();
        let outs: Mutex<Vec<Option<Tensor>>> = Mutex::new((0..count).map(|_| None).collect());
        self.run(pieces, self.workers_for(count), |net, (k, x, g)| {
            let y = tch::no_grad(|| net.forward(&x, &g));
            outs.lock().expect("outputs lock")[k] = Some(y);
        });
        let mut outs: Vec<Tensor> = outs
            .into_inner()
            .expect("outputs lock")
            .into_iter()
            .map(|y| y.expect("every chunk evaluated"))
            .collect();
        if outs.len() == 1 {
            outs.pop().expect("one chunk")
        } else {
            Tensor::cat(&outs, 0)
        }
    }
}
