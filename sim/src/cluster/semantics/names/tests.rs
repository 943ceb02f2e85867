use super::*;

fn messages(obj: Value, group: &str, kind: &str, namespaced: bool) -> Vec<String> {
    validate_object_meta(&obj, group, kind, namespaced).iter().map(FieldError::message_text).collect()
}

#[test]
fn subdomain_names_with_apiserver_message() {
    assert!(messages(json!({"metadata": {"name": "my-app.v2"}}), "apps", "Deployment", true).is_empty());
    assert_eq!(
        messages(json!({"metadata": {"name": "My_App"}}), "apps", "Deployment", true),
        [
            r#"metadata.name: Invalid value: "My_App": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
        ]
    );
}

#[test]
fn services_use_dns1035_labels_and_namespaces_dns1123_labels() {
    assert_eq!(
        messages(json!({"metadata": {"name": "1web"}}), "", "Service", true),
        [
            r#"metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#
        ]
    );
    let m = messages(json!({"metadata": {"name": "a.b"}}), "", "Namespace", false);
    assert_eq!(m.len(), 1);
    assert!(m[0].contains("a lowercase RFC 1123 label must consist of"), "{m:?}");
    assert_eq!(
        messages(json!({"metadata": {"name": "x".repeat(64)}}), "", "Namespace", false)[0],
        format!(r#"metadata.name: Invalid value: "{}": must be no more than 63 characters"#, "x".repeat(64))
    );
}

#[test]
fn name_or_generate_name_required() {
    assert_eq!(
        messages(json!({"metadata": {}}), "", "Pod", true),
        ["metadata.name: Required value: name or generateName is required"]
    );
    assert!(messages(json!({"metadata": {"generateName": "web-"}}), "", "Pod", true).is_empty());
}

#[test]
fn namespace_rules() {
    assert_eq!(
        messages(json!({"metadata": {"name": "n", "namespace": "x"}}), "", "Namespace", false),
        ["metadata.namespace: Forbidden: not allowed on this type"]
    );
    assert!(
        messages(json!({"metadata": {"name": "n", "namespace": "Bad"}}), "", "Pod", true)[0]
            .starts_with(r#"metadata.namespace: Invalid value: "Bad": a lowercase RFC 1123 label"#)
    );
}

#[test]
fn path_segment_rules_apply_to_every_kind() {
    assert_eq!(
        messages(json!({"metadata": {"name": ".."}}), "", "Event", true),
        ["metadata.name: Invalid value: \"..\": may not be '..'"]
    );
}

#[test]
fn labels_and_annotations() {
    assert!(
        messages(
            json!({"metadata": {"name": "p", "labels": {"app.kubernetes.io/name": "web", "empty": ""}}}),
            "",
            "Pod",
            true
        )
        .is_empty()
    );
    let m = messages(json!({"metadata": {"name": "p", "labels": {"bad key": "v", "k": "-bad"}}}), "", "Pod", true);
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(
        m[0],
        r#"metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#
    );
    assert!(m[1].starts_with(r#"metadata.labels: Invalid value: "-bad": a valid label must be an empty string"#));
    assert_eq!(is_qualified_name("/x"), ["prefix part must be non-empty"]);
    assert_eq!(messages(json!({"metadata": {"name": "p", "annotations": {"a/b/c": "v"}}}), "", "Pod", true).len(), 1);
    let big = "x".repeat(256 * 1024);
    assert_eq!(
        messages(json!({"metadata": {"name": "p", "annotations": {"k": big}}}), "", "Pod", true),
        ["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
}

#[test]
fn generated_names_use_the_apiserver_alphabet() {
    let mut i = 0;
    let mut next = |n: usize| {
        i += 1;
        i % n
    };
    assert_eq!(generate_name("web-", &mut next), "web-cdfgh");
    let long = "a".repeat(70);
    let name = generate_name(&long, &mut |_| 0);
    assert_eq!(name, format!("{}bbbbb", "a".repeat(58)));
}
