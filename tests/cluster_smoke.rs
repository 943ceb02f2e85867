mod cluster_common;
use cluster_common as common;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

#[tokio::test]
async fn smoke() {
    let c = common::cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client(), "default");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "a"}, "data": {"x": "1"}})).unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    println!("{}", serde_json::to_string_pretty(&created).unwrap());
    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["x"], "1");
    c.shutdown().await;
}
