//! Operating characteristics of the decision rules by seeded simulation.
//! `cargo bench --bench stats_simulation`

use forklane_core::stats::simulation::{AaStudy, PowerStudy, SrmStudy, aa_study, power_study, srm_study};
use std::time::Instant;

fn main() {
    let start = Instant::now();
    let run = || -> forklane_core::stats::Result<()> {
        let aa = aa_study(AaStudy {
            experiments: 2_000,
            looks: 100,
            per_look_per_arm: 1_000,
            rate: 0.05,
            alpha: 0.05,
            seed: 20_240_601,
        })?;
        println!("A/A (2000 experiments x 100 looks, 1000/arm/look, 5%, alpha 0.05): share declaring a difference");
        println!("  sequential (mSPRT decision)  {:.4}", aa.sequential_share);
        println!("  fixed-horizon z, peeked      {:.4}", aa.peeked_z_share);
        println!("  fixed-horizon z, last look   {:.4}", aa.final_z_share);
        for alpha in [0.05, 0.001] {
            let srm = srm_study(SrmStudy { experiments: 2_000, looks: 100, units_per_look: 1_000, alpha, seed: 7 })?;
            println!(
                "SRM A/A (2000 x 100 looks, 50/50, alpha {alpha}): sequential {:.4}, chi2 peeked {:.4}",
                srm.sequential_share, srm.peeked_chi2_share
            );
        }
        let p = power_study(PowerStudy {
            experiments: 2_000,
            max_looks: 150,
            per_look_per_arm: 1_000,
            base_rate: 0.05,
            uplift: 0.10,
            alpha: 0.05,
            seed: 11,
        })?;
        println!("power, 5% -> 5.5% (10% relative uplift), alpha 0.05, looks every 1000/arm up to 150000/arm:");
        println!("  fixed-horizon n per arm at 80% power      {}", p.fixed_n_per_arm_80);
        println!(
            "  sequential: median samples/arm to promote {}",
            p.median_samples_to_correct.map_or("-".into(), |m| m.to_string())
        );
        println!("  sequential: share correct (promote)       {:.4}", p.share_correct);
        println!("  sequential: share correct by fixed n      {:.4}", p.share_correct_by_fixed_n);
        println!("  sequential: share wrong (rollback)        {:.4}", p.share_wrong);
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("simulation failed: {e}");
        std::process::exit(1);
    }
    println!("({:.1?})", start.elapsed());
}
