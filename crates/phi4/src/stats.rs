//! Error analysis of Monte Carlo time series: integrated autocorrelation times (Sokal's
//! automatic windowing) and the binned jackknife.

use serde::Serialize;

/// An integrated autocorrelation time with its window and statistical error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TauInt {
    /// tau_int = 1/2 + sum_{t=1}^{W} rho(t), in units of the series' spacing (>= 1/2).
    pub tau: f64,
    /// The summation window W.
    pub window: usize,
    /// Madras-Sokal error tau sqrt(2 (2W + 1) / N).
    pub error: f64,
}

/// tau_int of one or more independent series of the same observable (e.g. parallel chains):
/// the autocorrelation function is averaged over series, each centred on the global mean.
/// Window: the smallest W with W >= c tau(W), c = 6, at most a quarter of the series.
pub fn tau_int(series: &[&[f64]]) -> TauInt {
    let total: usize = series.iter().map(|s| s.len()).sum();
    let mean = series.iter().flat_map(|s| s.iter()).sum::<f64>() / total.max(1) as f64;
    let gamma = |t: usize| -> f64 {
        let mut sum = 0.0;
        let mut count = 0usize;
        for s in series {
            if s.len() > t {
                for i in 0..s.len() - t {
                    sum += (s[i] - mean) * (s[i + t] - mean);
                }
                count += s.len() - t;
            }
        }
        if count == 0 {
            0.0
        } else {
            sum / count as f64
        }
    };
    let g0 = gamma(0);
    let max_len = series.iter().map(|s| s.len()).max().unwrap_or(0);
    if g0 <= 0.0 || max_len < 4 {
        return TauInt {
            tau: 0.5,
            window: 0,
            error: 0.0,
        };
    }
    let mut tau = 0.5;
    let mut window = 0;
    for t in 1..=max_len / 4 {
        tau += gamma(t) / g0;
        window = t;
        if t as f64 >= 6.0 * tau {
            break;
        }
    }
    let tau = tau.max(0.5);
    TauInt {
        tau,
        window,
        error: tau * (2.0 * (2 * window + 1) as f64 / total as f64).sqrt(),
    }
}

/// A value with its statistical error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Its standard error.
    pub error: f64,
}

/// Means of P primary quantities over N samples, binned: `bins[b * p + j]` is the mean of
/// primary j over bin b. Trailing samples that do not fill a bin are dropped.
#[derive(Debug, Clone)]
pub struct Binned {
    p: usize,
    nb: usize,
    bins: Vec<f64>,
    total: Vec<f64>,
}

impl Binned {
    /// `samples[i * p + j]` = primary j of sample i.
    pub fn new(samples: &[f64], p: usize, bin: usize) -> Self {
        let n = samples.len() / p;
        let bin = bin.clamp(1, n.max(1));
        let nb = n / bin;
        let mut bins = vec![0.0; nb * p];
        for b in 0..nb {
            for i in b * bin..(b + 1) * bin {
                for j in 0..p {
                    bins[b * p + j] += samples[i * p + j] / bin as f64;
                }
            }
        }
        let mut total = vec![0.0; p];
        for b in 0..nb {
            for j in 0..p {
                total[j] += bins[b * p + j];
            }
        }
        Binned { p, nb, bins, total }
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.nb
    }

    /// The mean of every primary over all bins.
    pub fn mean(&self) -> Vec<f64> {
        self.total.iter().map(|t| t / self.nb as f64).collect()
    }

    /// Jackknife estimate of f(means): value f(mean), error^2 = (nb-1)/nb sum_b (f_b - f_bar)^2
    /// with f_b = f(mean without bin b).
    pub fn jackknife(&self, f: impl Fn(&[f64]) -> f64) -> Estimate {
        let value = f(&self.mean());
        if self.nb < 2 {
            return Estimate {
                value,
                error: f64::NAN,
            };
        }
        let mut loo = vec![0.0; self.p];
        let fs: Vec<f64> = (0..self.nb)
            .map(|b| {
                for j in 0..self.p {
                    loo[j] = (self.total[j] - self.bins[b * self.p + j]) / (self.nb - 1) as f64;
                }
                f(&loo)
            })
            .collect();
        let fbar = fs.iter().sum::<f64>() / self.nb as f64;
        let var = fs.iter().map(|x| (x - fbar) * (x - fbar)).sum::<f64>() * (self.nb - 1) as f64
            / self.nb as f64;
        Estimate {
            value,
            error: var.sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    fn normals(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
    }

    #[test]
    fn jackknife_of_iid_mean_is_the_standard_error() {
        // i.i.d. N(0, 4): textbook standard error of the mean 2 / sqrt(N); within 10%.
        let n = 100_000;
        let x: Vec<f64> = normals(n, 1).iter().map(|v| 2.0 * v).collect();
        let b = Binned::new(&x, 1, 1);
        let e = b.jackknife(|m| m[0]);
        let se = 2.0 / (n as f64).sqrt();
        assert!((e.error / se - 1.0).abs() < 0.10, "{} vs {se}", e.error);
        // with bins of 10 the estimate is the same within its own error (~ sqrt(2/nb))
        let e10 = Binned::new(&x, 1, 10).jackknife(|m| m[0]);
        assert!((e10.error / se - 1.0).abs() < 0.10, "{} vs {se}", e10.error);
        let tau = tau_int(&[&x]);
        assert!((tau.tau - 0.5).abs() < 4.0 * tau.error.max(0.01), "{tau:?}");
    }

    #[test]
    fn tau_int_of_ar1_process() {
        // x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t: tau_int = (1 + rho) / (2 (1 - rho)).
        let rho: f64 = 0.8;
        let exact = (1.0 + rho) / (2.0 * (1.0 - rho));
        let chains: Vec<Vec<f64>> = (0..8)
            .map(|c| {
                let e = normals(20_000, 10 + c);
                let mut x = vec![0.0; e.len()];
                for t in 1..e.len() {
                    x[t] = rho * x[t - 1] + (1.0 - rho * rho).sqrt() * e[t];
                }
                x
            })
            .collect();
        let refs: Vec<&[f64]> = chains.iter().map(|c| &c[..]).collect();
        let tau = tau_int(&refs);
        assert!(
            (tau.tau - exact).abs() < 4.0 * tau.error,
            "{tau:?} vs {exact}"
        );
        // binning with bins >> tau gives the correct error of the mean: sqrt(2 tau / N)
        let all: Vec<f64> = chains.concat();
        let e = Binned::new(&all, 1, 200).jackknife(|m| m[0]);
        let expected = (2.0 * exact / all.len() as f64).sqrt();
        assert!(
            (e.error / expected - 1.0).abs() < 0.25,
            "{} vs {expected}",
            e.error
        );
    }
}
