//! Kubernetes DNS-1123 names, checked and worded as k8s.io/apimachinery/pkg/util/validation
//! checks and words them. The one implementation behind the Experiment validation, the Istio
//! validation (subset names) and the simulated API server (object names, namespaces).

/// Longest DNS-1123 label: namespaces, Service ports, label name parts, arm names.
pub(crate) const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain: the names of most objects.
pub(crate) const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// The regular expressions Kubernetes quotes in its messages.
pub(crate) const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
pub(crate) const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/// `validation.IsDNS1123Label` is empty: at most 63 lowercase alphanumerics or '-', starting and
/// ending with an alphanumeric.
pub(crate) fn is_dns1123_label(value: &str) -> bool {
    value.len() <= DNS1123_LABEL_MAX_LENGTH && has_label_form(value)
}

/// `validation.IsDNS1123Subdomain` is empty: at most 253 characters, labels joined by dots (each
/// label of any length: only the whole is bounded).
pub(crate) fn is_dns1123_subdomain(value: &str) -> bool {
    value.len() <= DNS1123_SUBDOMAIN_MAX_LENGTH && value.split('.').all(has_label_form)
}

/// `validation.IsDNS1123Label`: every rule `value` breaks, in Kubernetes' words.
pub fn dns1123_label_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !has_label_form(value) {
        errors.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errors
}

/// `validation.IsDNS1123Subdomain`: every rule `value` breaks, in Kubernetes' words.
pub fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(has_label_form) {
        errors.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errors
}

/// `validation.RegexError`: the message, the examples and the regular expression.
pub fn regex_error(message: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{fmt}')");
    }
    let listed: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{message} (e.g. {}regex used for validation is '{fmt}')", listed.join(" or "))
}

/// `validation.MaxLenError`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// `DNS1123_LABEL_FMT` without the length bound.
fn has_label_form(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            alphanumeric(first) && alphanumeric(last) && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn labels_follow_the_kubernetes_rules() {
        for good in ["a", "0", "v2-canary", "1-2", "a--b", &"a".repeat(63)] {
            assert!(is_dns1123_label(good) && dns1123_label_errors(good).is_empty(), "{good:?} is a label");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a b", "é", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad:?} is not a label");
            assert!(!dns1123_label_errors(bad).is_empty(), "{bad:?} has errors");
        }
    }

    #[test]
    fn subdomains_are_dotted_labels_of_at_most_253() {
        let long_part = "a".repeat(100);
        for good in ["a", "example.com", "a-1.b-2.c", &long_part, &format!("{}.{}", "a".repeat(126), "b".repeat(126))] {
            assert!(is_dns1123_subdomain(good) && dns1123_subdomain_errors(good).is_empty(), "{good:?}");
        }
        for bad in ["", ".", "a.", ".a", "a..b", "a.-b", "a-.b", "Example.com", "a_b.c", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?} is not a subdomain");
            assert!(!dns1123_subdomain_errors(bad).is_empty(), "{bad:?} has errors");
        }
    }

    #[test]
    fn errors_are_worded_as_kubernetes_words_them() {
        assert_eq!(
            dns1123_label_errors(&format!("{}_", "a".repeat(63))),
            [
                "must be no more than 63 characters",
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ]
        );
        assert_eq!(
            dns1123_subdomain_errors("My_App"),
            [
                r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
    }

    proptest! {
        /// The checks agree with the regular expressions Kubernetes uses, plus the length bounds.
        #[test]
        fn checks_agree_with_the_kubernetes_regexes(value in "[-a-zA-Z0-9._]{0,12}") {
            let label = regex::Regex::new(&format!("^{DNS1123_LABEL_FMT}$")).unwrap();
            let subdomain = regex::Regex::new(&format!("^{DNS1123_SUBDOMAIN_FMT}$")).unwrap();
            prop_assert_eq!(is_dns1123_label(&value), label.is_match(&value));
            prop_assert_eq!(is_dns1123_subdomain(&value), subdomain.is_match(&value));
        }
    }
}
