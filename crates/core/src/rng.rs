//! Random streams: every random draw of gud comes from a stream named by (seed, purpose, index),
//! so that no two purposes share a stream (the training data of a free-field config and the
//! sampler's noise used to be the same ChaCha8 streams, and `gud run` then compared the samples
//! with themselves).
//!
//! A stream is ChaCha8 with the 256-bit key `(seed, purpose tag, 0, 0)` (little endian) and the
//! 64-bit stream number `index`: distinct (seed, purpose) pairs give distinct keys, and within
//! one the indices give ChaCha's independent streams. Any single draw can be regenerated alone.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a stream is used for; each purpose has its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// The prior draw and the SDE/ancestral noise of sample k (index k).
    Sampler,
    /// Exact draws of the free lattice field, configuration i (index i).
    FreeFieldData,
    /// The forward-process noise eps of the ELBO for data point k.
    Elbo,
    /// Hutchinson probes of the probability-flow ODE likelihood for data point k.
    OdeProbes,
    /// The sliding-window extension's noise, sample k.
    Extension,
    /// Perturbations of the smoothed empirical score (index: query counter).
    Smoothing,
    /// The forward-process figure's noise (index: the sample shown).
    Figure,
    /// Network training: the data order of epoch e (index e).
    TrainEpoch,
    /// Network training: the draws of step s (index s).
    TrainStep,
    /// Subsampling and projections of the evaluation metrics (index: repetition).
    Metrics,
    /// The classifier's training draws (index: step).
    Classifier,
    /// The network's initial weights (index 0).
    NetworkInit,
    /// Uniform dequantisation of 8-bit test data for the likelihoods (index: data point).
    Dequantization,
    /// The accept/reject uniforms of independence Metropolis-Hastings (index 0).
    Metropolis,
    /// The streams of the tangent rows of exact sampling, which deterministic samplers never
    /// draw from (index: row).
    Tangent,
    /// Forward noising asked for by a library user (`Design.noise` of the Python package;
    /// index: row).
    UserNoise,
    /// Training batches of a user's own network ([`crate::process::noised_batch`]; index:
    /// the training step).
    UserBatch,
    /// The noised rows of `gud export --check` (index 0).
    ExportCheck,
    /// The pilot prior draws of the time-grid tuner (index: draw).
    GridTuning,
    /// The initial weights of the flow's couplings (index 0).
    FlowInit,
    /// The prior draws of a step of the flow's training (index: the step).
    FlowTraining,
}

impl Purpose {
    /// A fixed tag per purpose (part of the key; never reorder or reuse a value).
    fn tag(self) -> u64 {
        match self {
            Purpose::Sampler => 1,
            Purpose::FreeFieldData => 2,
            Purpose::Elbo => 3,
            Purpose::OdeProbes => 4,
            Purpose::Extension => 5,
            Purpose::Smoothing => 6,
            Purpose::Figure => 7,
            Purpose::TrainEpoch => 8,
            Purpose::TrainStep => 9,
            Purpose::Metrics => 10,
            Purpose::Classifier => 11,
            Purpose::Dequantization => 12,
            Purpose::NetworkInit => 13,
            Purpose::Metropolis => 14,
            Purpose::Tangent => 15,
            Purpose::UserNoise => 16,
            Purpose::UserBatch => 17,
            Purpose::ExportCheck => 18,
            Purpose::GridTuning => 19,
            Purpose::FlowInit => 20,
            Purpose::FlowTraining => 21,
        }
    }
}

/// The stream (seed, purpose, index): ChaCha8 keyed by (seed, purpose), stream `index`.
pub fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&purpose.tag().to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(index);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    fn first_words(mut r: ChaCha8Rng) -> [u64; 4] {
        [r.next_u64(), r.next_u64(), r.next_u64(), r.next_u64()]
    }

    #[test]
    fn purposes_seeds_and_indices_give_distinct_streams() {
        let purposes = [
            Purpose::Sampler,
            Purpose::FreeFieldData,
            Purpose::Elbo,
            Purpose::OdeProbes,
            Purpose::Extension,
            Purpose::Smoothing,
            Purpose::Figure,
            Purpose::TrainEpoch,
            Purpose::TrainStep,
            Purpose::Metrics,
            Purpose::Classifier,
            Purpose::Dequantization,
            Purpose::NetworkInit,
            Purpose::Metropolis,
            Purpose::Tangent,
            Purpose::UserNoise,
            Purpose::UserBatch,
            Purpose::ExportCheck,
            Purpose::GridTuning,
        ];
        let mut seen = std::collections::HashSet::new();
        for p in purposes {
            for seed in [0, 1, 1000] {
                for index in [0, 1, 2] {
                    assert!(
                        seen.insert(first_words(stream(seed, p, index))),
                        "{p:?} seed {seed} index {index} repeats another stream"
                    );
                }
            }
        }
    }

    #[test]
    fn a_stream_is_a_pure_function_of_its_name() {
        assert_eq!(
            first_words(stream(7, Purpose::Sampler, 3)),
            first_words(stream(7, Purpose::Sampler, 3))
        );
    }
}
