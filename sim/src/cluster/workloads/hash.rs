//! The `pod-template-hash` label: FNV-32a of the pod template, its decimal rendering
//! encoded with the apimachinery "safe" alphabet (no vowels, no 0/1/3, so no words).
//!
//! Kubernetes feeds FNV the `spew` dump of its Go `PodTemplateSpec` struct, which cannot be
//! reproduced from JSON; we hash a canonical JSON rendering (sorted keys) instead. The value
//! therefore differs from a real cluster's for the same template, but it has the same
//! alphabet, length range and stability: equal templates give equal hashes, and the
//! collision count perturbs it exactly as in `controller.ComputeHash`.

use serde_json::Value;

/// `k8s.io/apimachinery/pkg/util/rand` alphanums, shared with `generateName`.
const SAFE_ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub(crate) fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// `rand.SafeEncodeString`: each byte maps to one alphabet character.
pub(crate) fn safe_encode(s: &str) -> String {
    s.bytes().map(|b| SAFE_ALPHANUMS[usize::from(b) % SAFE_ALPHANUMS.len()] as char).collect()
}

/// The hash of a Deployment's template (which carries no `pod-template-hash` label) with the
/// Deployment's `status.collisionCount`.
pub(crate) fn pod_template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut bytes = Vec::new();
    canonical(template, &mut bytes);
    if let Some(c) = collision_count {
        // Like ComputeHash: the count as 8 little-endian bytes of which the low 4 are used.
        let mut extra = [0u8; 8];
        extra[..4].copy_from_slice(&(c as u32).to_le_bytes());
        bytes.extend_from_slice(&extra);
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// JSON with object keys sorted, independent of map ordering features.
fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(x, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv32a_matches_reference_vectors() {
        // Vectors from the FNV reference (Noll): "" and "a" and "foobar".
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn safe_encoding_matches_apimachinery() {
        // '0' is byte 48 → 48 % 27 = 21 → '4'; '9' is 57 → 57 % 27 = 3 → 'f'.
        assert_eq!(safe_encode("09"), "4f");
        let h = pod_template_hash(&json!({"metadata": {"labels": {"app": "a"}}}), None);
        assert!((6..=10).contains(&h.len()), "a u32 has 1–10 decimal digits, in practice ≥ 6: {h}");
        assert!(h.bytes().all(|b| SAFE_ALPHANUMS.contains(&b)));
    }

    #[test]
    fn hash_ignores_key_order_and_depends_on_collisions() {
        let a = json!({"metadata": {"labels": {"app": "a", "v": "1"}}, "spec": {"x": 1}});
        let b = json!({"spec": {"x": 1}, "metadata": {"labels": {"v": "1", "app": "a"}}});
        assert_eq!(pod_template_hash(&a, None), pod_template_hash(&b, None));
        assert_ne!(pod_template_hash(&a, None), pod_template_hash(&a, Some(1)));
        assert_ne!(pod_template_hash(&a, None), pod_template_hash(&json!({"spec": {"x": 2}}), None));
    }
}
