//! Operating characteristics of the decision rules, by seeded simulation through the
//! real decision function. Figures are printed (run with `--nocapture`) for the docs.

use forklane_core::stats::simulation::{AaStudy, PowerStudy, SrmStudy, aa_study, power_study, srm_study};

#[test]
fn aa_sequential_holds_alpha_while_peeked_z_test_inflates() {
    let r = aa_study(AaStudy {
        experiments: 2_000,
        looks: 100,
        per_look_per_arm: 1_000,
        rate: 0.05,
        alpha: 0.05,
        seed: 20_240_601,
    })
    .unwrap();
    eprintln!(
        "A/A, 2000 experiments x 100 looks: sequential {:.4}, peeked z {:.4}, z at last look only {:.4}",
        r.sequential_share, r.peeked_z_share, r.final_z_share
    );
    assert!(r.sequential_share <= 0.05, "sequential false-positive share {}", r.sequential_share);
    assert!(r.peeked_z_share > 0.15, "peeking should inflate the z-test: {}", r.peeked_z_share);
    // The single final look is a valid test: its share is near α (binomial sd ≈ 0.005).
    assert!((r.final_z_share - 0.05).abs() < 0.02, "final-look share {}", r.final_z_share);
}

#[test]
fn sequential_srm_holds_its_level_under_repeated_checks() {
    let r =
        srm_study(SrmStudy { experiments: 2_000, looks: 100, units_per_look: 1_000, alpha: 0.05, seed: 7 }).unwrap();
    eprintln!(
        "SRM A/A, 2000 x 100 looks at alpha 0.05: sequential {:.4}, peeked chi2 {:.4}",
        r.sequential_share, r.peeked_chi2_share
    );
    assert!(r.sequential_share <= 0.05, "sequential SRM share {}", r.sequential_share);
    assert!(r.peeked_chi2_share > 0.15, "peeked chi2 should inflate: {}", r.peeked_chi2_share);
}

#[test]
fn power_for_ten_percent_uplift_on_five_percent() {
    let r = power_study(PowerStudy {
        experiments: 1_000,
        max_looks: 150,
        per_look_per_arm: 1_000,
        base_rate: 0.05,
        uplift: 0.10,
        alpha: 0.05,
        seed: 11,
    })
    .unwrap();
    let median = r.median_samples_to_correct.unwrap_or(0);
    eprintln!(
        "power: fixed-horizon n at 80% = {} per arm; sequential correct {:.3} (by the fixed n: {:.3}), wrong {:.3}, median samples per arm to correct promotion {median}",
        r.fixed_n_per_arm_80, r.share_correct, r.share_correct_by_fixed_n, r.share_wrong
    );
    assert!((30_000..33_000).contains(&r.fixed_n_per_arm_80));
    assert!(r.share_correct >= 0.8, "share correct within 150k per arm: {}", r.share_correct);
    assert!(r.share_wrong <= 0.01, "a better arm should almost never be rolled back: {}", r.share_wrong);
    assert!(median > 0 && median < 2 * r.fixed_n_per_arm_80, "median {median}");
}
