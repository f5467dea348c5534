//! The lattice action and its force (SPEC section 7).

use crate::{invalid, Result};
use serde::{Deserialize, Serialize};

/// Couplings of S = sum_x [ sum_mu (phi_{x+mu} - phi_x)^2 + m2 phi_x^2 + lam phi_x^4 ].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Couplings {
    /// m^2.
    pub m2: f64,
    /// lambda.
    pub lam: f64,
}

impl Couplings {
    /// Checks that the couplings are finite and the action bounded below (lam > 0, or
    /// lam = 0 with m2 > 0).
    pub fn new(m2: f64, lam: f64) -> Result<Self> {
        if !m2.is_finite() {
            return Err(invalid("m2", m2, "a finite number"));
        }
        if !lam.is_finite() || lam < 0.0 {
            return Err(invalid("lam", lam, "a finite number >= 0"));
        }
        if lam == 0.0 && m2 <= 0.0 {
            return Err(invalid(
                "m2",
                m2,
                "m2 > 0 when lam = 0 (otherwise the action is unbounded below)",
            ));
        }
        Ok(Couplings { m2, lam })
    }

    /// The hopping-parameter convention (e.g. Wang, Aarts & Zhou):
    /// `S = sum_x [ -2 kappa sum_mu varphi_x varphi_{x+mu} + (1 - 2 lambda) varphi_x^2 + lambda varphi_x^4 ]`.
    /// With phi = sqrt(kappa) varphi it is this crate's action with
    /// `m2 = (1 - 2 lambda) / kappa - 4` and `lam = lambda / kappa^2` (in two dimensions).
    pub fn from_hopping(kappa: f64, lambda: f64) -> Result<Self> {
        if !kappa.is_finite() || kappa <= 0.0 {
            return Err(invalid("kappa", kappa, "a finite number > 0"));
        }
        if !lambda.is_finite() || lambda < 0.0 {
            return Err(invalid("lambda", lambda, "a finite number >= 0"));
        }
        Couplings::new((1.0 - 2.0 * lambda) / kappa - 4.0, lambda / (kappa * kappa))
    }
}

/// Chains advanced together in one interleaved block (one cache line of f64 per site).
pub const LANES: usize = 8;

/// The LANES values of site i in an interleaved block.
#[inline(always)]
fn lane(phi: &[f64], i: usize) -> &[f64; LANES] {
    phi[i * LANES..(i + 1) * LANES]
        .try_into()
        .expect("LANES values")
}

/// The per-lane constants of a kick `mom += c F(phi)`, F = a (neighbours) + phi (b + q phi^2).
struct KickCoefficients {
    a: [f64; LANES],
    b: [f64; LANES],
    q: [f64; LANES],
}

impl KickCoefficients {
    #[inline(always)]
    fn new(Couplings { m2, lam }: Couplings, c: &[f64; LANES]) -> Self {
        KickCoefficients {
            a: c.map(|c| 2.0 * c),
            b: c.map(|c| -(8.0 + 2.0 * m2) * c),
            q: c.map(|c| -4.0 * lam * c),
        }
    }
}

/// An L x L periodic lattice with its couplings; fields are row-major slices of length L^2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lattice {
    /// Lattice size L.
    pub l: usize,
    /// The couplings.
    pub couplings: Couplings,
}

impl Lattice {
    /// An L x L periodic lattice with these couplings.
    pub fn new(l: usize, couplings: Couplings) -> Result<Self> {
        if l < 2 {
            return Err(invalid("L", l, "a lattice size L >= 2"));
        }
        // a field, its momentum and the force per chain lane: refuse what cannot be held
        gud_core::memory::check_alloc(&format!("a {l} x {l} lattice"), &[l, l], 3 * 8)?;
        Ok(Lattice { l, couplings })
    }

    /// V = L^2.
    pub fn volume(&self) -> usize {
        self.l * self.l
    }

    /// `S[phi]` (forward differences: every link once). Row by row with zipped slices.
    pub fn action(&self, phi: &[f64]) -> f64 {
        let l = self.l;
        let Couplings { m2, lam } = self.couplings;
        let mut s = 0.0;
        for y in 0..l {
            let row = &phi[y * l..(y + 1) * l];
            let yn = if y + 1 == l { 0 } else { y + 1 };
            let next = &phi[yn * l..(yn + 1) * l];
            // links in y and the local terms
            for (&p, &n) in row.iter().zip(next) {
                let dy = n - p;
                let p2 = p * p;
                s += dy * dy + p2 * (m2 + lam * p2);
            }
            // links in x, the periodic one last
            for (&a, &b) in row.iter().zip(&row[1..]) {
                s += (b - a) * (b - a);
            }
            let wrap = row[0] - row[l - 1];
            s += wrap * wrap;
        }
        s
    }

    /// mom += c F(phi), with the force F = -dS/dphi = 2 lap(phi) - 2 m2 phi - 4 lam phi^3
    /// and lap(phi)_x = sum_mu (phi_{x+mu} + phi_{x-mu} - 2 phi_x). Row by row, so the
    /// interior loop vectorises.
    pub fn kick(&self, phi: &[f64], mom: &mut [f64], c: f64) {
        let l = self.l;
        let Couplings { m2, lam } = self.couplings;
        // F = 2 (neighbours) - (8 + 2 m2) phi - 4 lam phi^3
        let (a, b, q) = (2.0 * c, -(8.0 + 2.0 * m2) * c, -4.0 * lam * c);
        // rows without integer division: this runs 11 times per trajectory on small lattices
        for (y, out) in mom.chunks_exact_mut(l).enumerate() {
            let yu = if y == 0 { l - 1 } else { y - 1 };
            let yd = if y + 1 == l { 0 } else { y + 1 };
            let up = &phi[yu * l..(yu + 1) * l];
            let dn = &phi[yd * l..(yd + 1) * l];
            let row = &phi[y * l..(y + 1) * l];
            let site = |x: usize, left: f64, right: f64| {
                let p = row[x];
                a * (left + right + up[x] + dn[x]) + p * (b + q * p * p)
            };
            out[0] += site(0, row[l - 1], row[1]);
            if l > 2 {
                // interior: zipped slices, no bounds checks, so the loop vectorises
                let n = l - 2;
                let it = out[1..=n]
                    .iter_mut()
                    .zip(&row[1..=n])
                    .zip(row[..n].iter().zip(&row[2..]))
                    .zip(up[1..=n].iter().zip(&dn[1..=n]));
                for (((o, &p), (&lt, &rt)), (&u, &d)) in it {
                    *o += a * (lt + rt + u + d) + p * (b + q * p * p);
                }
            }
            out[l - 1] += site(l - 1, row[l - 2], row[0]);
        }
    }

    /// `S[phi]` of LANES interleaved fields (`phi[x * LANES + k]` is site x of field k): the
    /// same sums as [`Lattice::action`], lane by lane, in vector-friendly order.
    pub fn action_lanes(&self, phi: &[f64]) -> [f64; LANES] {
        let l = self.l;
        let Couplings { m2, lam } = self.couplings;
        let mut s = [0.0; LANES];
        for y in 0..l {
            let yn = if y + 1 == l { 0 } else { y + 1 };
            for x in 0..l {
                let xn = if x + 1 == l { 0 } else { x + 1 };
                let p = lane(phi, y * l + x);
                let (r, d) = (lane(phi, y * l + xn), lane(phi, yn * l + x));
                for k in 0..LANES {
                    let (dx, dy, p2) = (r[k] - p[k], d[k] - p[k], p[k] * p[k]);
                    s[k] += dx * dx + dy * dy + p2 * (m2 + lam * p2);
                }
            }
        }
        s
    }

    /// mom += c_k F(phi) for LANES interleaved fields, with a step coefficient per lane (the
    /// force of [`Lattice::kick`]); every site is alike, so the lane loop vectorises fully.
    /// (Always inlined, so that the AVX2 leapfrog of the HMC compiles it with AVX2.)
    #[inline(always)]
    pub fn kick_lanes(&self, phi: &[f64], mom: &mut [f64], c: &[f64; LANES]) {
        self.kick_lanes_with::<false>(phi, mom, c);
    }

    /// [`Lattice::kick_lanes`] fused with the energies of the end of a trajectory: returns
    /// `(S[phi], 1/2 |mom|^2)` per lane after the kick, in one pass over the lattice. The sums run
    /// in the order of [`Lattice::action_lanes`] and of a site-ordered kinetic sum, so the
    /// results are the same bits as the separate passes.
    #[inline(always)]
    pub fn kick_lanes_energy(
        &self,
        phi: &[f64],
        mom: &mut [f64],
        c: &[f64; LANES],
    ) -> ([f64; LANES], [f64; LANES]) {
        self.kick_lanes_with::<true>(phi, mom, c)
    }

    /// A leapfrog drift `phi += eps_k mom` followed by a kick `mom += c_k F(phi)`, in one pass:
    /// each row is drifted just before the first row whose kick reads it (rows L-1 and 0
    /// first), so the result is the same bits as the two separate passes.
    #[inline(always)]
    pub fn drift_kick_lanes(
        &self,
        phi: &mut [f64],
        mom: &mut [f64],
        eps: &[f64; LANES],
        c: &[f64; LANES],
    ) {
        self.drift_kick_lanes_with::<false>(phi, mom, eps, c);
    }

    /// [`Lattice::drift_kick_lanes`] fused with the end-of-trajectory energies, as
    /// [`Lattice::kick_lanes_energy`].
    #[inline(always)]
    pub fn drift_kick_lanes_energy(
        &self,
        phi: &mut [f64],
        mom: &mut [f64],
        eps: &[f64; LANES],
        c: &[f64; LANES],
    ) -> ([f64; LANES], [f64; LANES]) {
        self.drift_kick_lanes_with::<true>(phi, mom, eps, c)
    }

    /// phi += eps_k mom on row y.
    #[inline(always)]
    fn drift_row(&self, phi: &mut [f64], mom: &[f64], eps: &[f64; LANES], y: usize) {
        let r = y * self.l * LANES..(y + 1) * self.l * LANES;
        for (x, m) in phi[r.clone()]
            .chunks_exact_mut(LANES)
            .zip(mom[r].chunks_exact(LANES))
        {
            for k in 0..LANES {
                x[k] += eps[k] * m[k];
            }
        }
    }

    /// The kick kernel; with `ENERGY` it also sums the action and the kinetic energy (zeros
    /// otherwise: the compiler drops those sums).
    #[inline(always)]
    fn kick_lanes_with<const ENERGY: bool>(
        &self,
        phi: &[f64],
        mom: &mut [f64],
        c: &[f64; LANES],
    ) -> ([f64; LANES], [f64; LANES]) {
        let k = KickCoefficients::new(self.couplings, c);
        let mut sums = ([0.0; LANES], [0.0; LANES]);
        for y in 0..self.l {
            self.kick_row::<ENERGY>(phi, mom, &k, y, &mut sums);
        }
        (sums.0, sums.1.map(|x| 0.5 * x))
    }

    /// The drift + kick kernel: each row is drifted just before the first kick that reads it.
    #[inline(always)]
    fn drift_kick_lanes_with<const ENERGY: bool>(
        &self,
        phi: &mut [f64],
        mom: &mut [f64],
        eps: &[f64; LANES],
        c: &[f64; LANES],
    ) -> ([f64; LANES], [f64; LANES]) {
        let l = self.l;
        let k = KickCoefficients::new(self.couplings, c);
        let mut sums = ([0.0; LANES], [0.0; LANES]);
        self.drift_row(phi, mom, eps, l - 1);
        self.drift_row(phi, mom, eps, 0);
        for y in 0..l {
            if y + 1 < l - 1 {
                self.drift_row(phi, mom, eps, y + 1);
            }
            self.kick_row::<ENERGY>(phi, mom, &k, y, &mut sums);
        }
        (sums.0, sums.1.map(|x| 0.5 * x))
    }

    /// The kick of row y (and, with `ENERGY`, its terms of S and of |mom|^2 after the kick).
    #[inline(always)]
    fn kick_row<const ENERGY: bool>(
        &self,
        phi: &[f64],
        mom: &mut [f64],
        k: &KickCoefficients,
        y: usize,
        (s, k2): &mut ([f64; LANES], [f64; LANES]),
    ) {
        let l = self.l;
        let Couplings { m2, lam } = self.couplings;
        let (a, b, q) = (&k.a, &k.b, &k.q);
        let yu = if y == 0 { l - 1 } else { y - 1 };
        let yd = if y + 1 == l { 0 } else { y + 1 };
        for x in 0..l {
            let xl = if x == 0 { l - 1 } else { x - 1 };
            let xr = if x + 1 == l { 0 } else { x + 1 };
            let i = y * l + x;
            let p = lane(phi, i);
            let (lt, rt) = (lane(phi, y * l + xl), lane(phi, y * l + xr));
            let (u, d) = (lane(phi, yu * l + x), lane(phi, yd * l + x));
            let o: &mut [f64; LANES] = (&mut mom[i * LANES..(i + 1) * LANES])
                .try_into()
                .expect("LANES values");
            for k in 0..LANES {
                o[k] += a[k] * (lt[k] + rt[k] + u[k] + d[k]) + p[k] * (b[k] + q[k] * p[k] * p[k]);
                if ENERGY {
                    let (dx, dy, p2) = (rt[k] - p[k], d[k] - p[k], p[k] * p[k]);
                    s[k] += dx * dx + dy * dy + p2 * (m2 + lam * p2);
                    k2[k] += o[k] * o[k];
                }
            }
        }
    }

    /// -dS/dphi as a new vector (for tests and diagnostics).
    pub fn force(&self, phi: &[f64]) -> Vec<f64> {
        let mut f = vec![0.0; phi.len()];
        self.kick(phi, &mut f, 1.0);
        f
    }
}

/// The target of exact sampling (SPEC section 9): `log p(phi) = -S[phi]`.
impl gud_core::exact::Target for Lattice {
    fn dim(&self) -> usize {
        self.volume()
    }

    fn log_density(&self, phi: &[f64]) -> f64 {
        -self.action(phi)
    }

    /// `grad log p = -dS/dphi`, the force.
    fn grad_log_density(&self, phi: &[f64], grad: &mut [f64]) {
        grad.iter_mut().for_each(|g| *g = 0.0);
        self.kick(phi, grad, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn force_is_minus_the_gradient() {
        let lat = Lattice::new(5, Couplings::new(-1.3, 0.7).unwrap()).unwrap();
        let phi: Vec<f64> = (0..25).map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0).collect();
        let f = lat.force(&phi);
        let h = 1e-6;
        for i in 0..25 {
            let mut p = phi.clone();
            p[i] += h;
            let sp = lat.action(&p);
            p[i] -= 2.0 * h;
            let sm = lat.action(&p);
            let fd = -(sp - sm) / (2.0 * h);
            assert!(
                (fd - f[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "site {i}: {fd} vs {}",
                f[i]
            );
        }
    }

    #[test]
    fn lane_kernels_equal_the_single_field_ones() {
        let lat = Lattice::new(5, Couplings::new(-1.3, 0.7).unwrap()).unwrap();
        let v = 25;
        let fields: Vec<Vec<f64>> = (0..LANES)
            .map(|k| {
                (0..v)
                    .map(|i| (((i + 3 * k) * 7 % 11) as f64 - 5.0) / 4.0)
                    .collect()
            })
            .collect();
        let mut block = vec![0.0; v * LANES];
        for (k, f) in fields.iter().enumerate() {
            for i in 0..v {
                block[i * LANES + k] = f[i];
            }
        }
        let c: [f64; LANES] = std::array::from_fn(|k| 0.1 + 0.01 * k as f64);
        let mut mom = vec![0.0; v * LANES];
        lat.kick_lanes(&block, &mut mom, &c);
        let s = lat.action_lanes(&block);
        for (k, f) in fields.iter().enumerate() {
            let mut m = vec![0.0; v];
            lat.kick(f, &mut m, c[k]);
            for i in 0..v {
                assert!(
                    (m[i] - mom[i * LANES + k]).abs() < 1e-12,
                    "lane {k} site {i}"
                );
            }
            assert!((s[k] - lat.action(f)).abs() < 1e-10 * s[k].abs().max(1.0));
        }
        // the fused drift + kick (+ energies) are the same bits as the separate passes
        for l in [2, 3, 5] {
            let lat = Lattice::new(l, Couplings::new(-1.3, 0.7).unwrap()).unwrap();
            let n = l * l * LANES;
            let phi0: Vec<f64> = (0..n).map(|i| ((i * 7 % 17) as f64 - 8.0) / 5.0).collect();
            let mom0: Vec<f64> = (0..n).map(|i| ((i * 5 % 13) as f64 - 6.0) / 3.0).collect();
            let eps: [f64; LANES] = std::array::from_fn(|k| 0.07 + 0.003 * k as f64);
            let (mut q1, mut p1) = (phi0.clone(), mom0.clone());
            lat.drift_kick_lanes(&mut q1, &mut p1, &eps, &c);
            let (mut q2, mut p2) = (phi0.clone(), mom0.clone());
            for (j, x) in q2.iter_mut().enumerate() {
                *x += eps[j % LANES] * p2[j];
            }
            lat.kick_lanes(&q2, &mut p2, &c);
            assert_eq!((&q1, &p1), (&q2, &p2), "drift + kick, L = {l}");
            let (mut q3, mut p3) = (phi0, mom0);
            let (s3, k3) = lat.drift_kick_lanes_energy(&mut q3, &mut p3, &eps, &c);
            assert_eq!((&q3, &p3), (&q2, &p2), "drift + kick + energy, L = {l}");
            assert_eq!(s3, lat.action_lanes(&q2));
            let mut k2 = [0.0; LANES];
            for (j, m) in p2.iter().enumerate() {
                k2[j % LANES] += m * m;
            }
            assert_eq!(k3, k2.map(|x| 0.5 * x));
        }
        // the fused kick + energies are the same bits as the separate passes
        let mut fused: Vec<f64> = (0..v * LANES)
            .map(|i| (i % 13) as f64 * 0.1 - 0.6)
            .collect();
        let mut separate = fused.clone();
        let (sf, kf) = lat.kick_lanes_energy(&block, &mut fused, &c);
        lat.kick_lanes(&block, &mut separate, &c);
        assert_eq!(fused, separate);
        assert_eq!(sf, lat.action_lanes(&block));
        let mut k2 = [0.0; LANES];
        for site in separate.chunks_exact(LANES) {
            for k in 0..LANES {
                k2[k] += site[k] * site[k];
            }
        }
        assert_eq!(kf, k2.map(|x| 0.5 * x));
    }

    #[test]
    fn hopping_conversion_is_exact() {
        // S_hop(varphi) == S(phi = sqrt(kappa) varphi) for a random field
        let (kappa, lambda) = (0.3, 0.022);
        let c = Couplings::from_hopping(kappa, lambda).unwrap();
        let lat = Lattice::new(4, c).unwrap();
        let varphi: Vec<f64> = (0..16).map(|i| ((i * 5 % 7) as f64 - 3.0) / 2.0).collect();
        let l = 4;
        let mut s_hop = 0.0;
        for y in 0..l {
            for x in 0..l {
                let v = varphi[y * l + x];
                let nb = varphi[y * l + (x + 1) % l] + varphi[((y + 1) % l) * l + x];
                s_hop += -2.0 * kappa * v * nb + (1.0 - 2.0 * lambda) * v * v + lambda * v.powi(4);
            }
        }
        let phi: Vec<f64> = varphi.iter().map(|v| v * kappa.sqrt()).collect();
        assert!((lat.action(&phi) - s_hop).abs() < 1e-12 * s_hop.abs().max(1.0));
    }

    #[test]
    fn bad_couplings() {
        assert!(Couplings::new(f64::NAN, 1.0).is_err());
        assert!(Couplings::new(1.0, -1.0).is_err());
        assert!(Couplings::new(-1.0, 0.0).is_err());
        assert!(Lattice::new(1, Couplings::new(1.0, 0.0).unwrap()).is_err());
        assert!(Couplings::from_hopping(0.0, 0.1).is_err());
    }
}
