//! Real kubectl 1.37's imperative commands against the in-process server. kubectl sends
//! their bodies as protobuf (`application/vnd.kubernetes.protobuf`) for built-in kinds; the
//! objects must reach the store as their JSON bodies would have. kubectl must be on PATH
//! (scripts/install-kubectl); without it these tests fail, they never skip.

use crate::support;
use forklane_sim::cluster::resources::Gvr;
use serde_json::{Value, json};
use support::cluster::cluster;
use support::kubectl::Kubectl;
use tokio::time::{Duration, timeout};

const LIMIT: Duration = Duration::from_secs(60);

fn stored(c: &forklane_sim::cluster::Cluster, group: &str, resource: &str, ns: Option<&str>, name: &str) -> Value {
    c.store().get(&Gvr::new(group, "v1", resource), ns, name).unwrap_or_else(|e| panic!("{resource}/{name}: {e}"))
}

#[tokio::test]
async fn create_family_writes_the_objects_their_json_bodies_would() {
    timeout(LIMIT, async {
        let c = cluster().await;
        let k = Kubectl::new(&c, std::path::Path::new("."));

        assert_eq!(k.ok(&["create", "namespace", "team"]).await.trim(), "namespace/team created");
        assert_eq!(stored(&c, "", "namespaces", None, "team")["metadata"]["name"], "team");
        let again = k.run(&["create", "namespace", "team"]).await;
        assert!(!again.ok && again.stderr.contains("AlreadyExists"), "{}", again.stderr);

        let out = k
            .ok(&[
                "create",
                "configmap",
                "settings",
                "-n",
                "team",
                "--from-literal=color=blue",
                "--from-literal=size=2",
            ])
            .await;
        assert_eq!(out.trim(), "configmap/settings created");
        let cm = stored(&c, "", "configmaps", Some("team"), "settings");
        assert_eq!(cm["data"], json!({"color": "blue", "size": "2"}));
        assert_eq!(cm["metadata"]["namespace"], "team");

        let out =
            k.ok(&["create", "secret", "generic", "creds", "-n", "team", "--from-literal=password=hunter2"]).await;
        assert_eq!(out.trim(), "secret/creds created");
        let secret = stored(&c, "", "secrets", Some("team"), "creds");
        assert_eq!(secret["data"], json!({"password": "aHVudGVyMg=="}));
        assert_eq!(secret["type"], "Opaque");

        let out = k
            .ok(&["create", "deployment", "web", "-n", "team", "--image=nginx:1.27", "--replicas=3", "--port=8080"])
            .await;
        assert_eq!(out.trim(), "deployment.apps/web created");
        let deploy = stored(&c, "apps", "deployments", Some("team"), "web");
        let spec = &deploy["spec"];
        assert_eq!(spec["replicas"], 3);
        assert_eq!(spec["selector"], json!({"matchLabels": {"app": "web"}}));
        assert_eq!(spec["template"]["metadata"]["labels"], json!({"app": "web"}));
        let container = &spec["template"]["spec"]["containers"][0];
        assert_eq!((&container["name"], &container["image"]), (&json!("nginx"), &json!("nginx:1.27")));
        assert_eq!(container["ports"], json!([{"containerPort": 8080, "protocol": "TCP"}]));
        // Defaults were applied to what was absent, as to a JSON body.
        assert_eq!(spec["strategy"]["rollingUpdate"], json!({"maxSurge": "25%", "maxUnavailable": "25%"}));
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert!(spec.get("paused").is_none(), "zero non-pointer fields stay absent: {spec}");

        let out = k.ok(&["create", "service", "clusterip", "api", "-n", "team", "--tcp=80:8080"]).await;
        assert_eq!(out.trim(), "service/api created");
        let svc = stored(&c, "", "services", Some("team"), "api");
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["selector"], json!({"app": "api"}));
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}])
        );

        let out = k
            .ok(&[
                "run",
                "tools",
                "-n",
                "team",
                "--image=busybox:1.36",
                "--restart=Never",
                "--labels=tier=tools",
                "--env=MODE=probe",
                "--port=9000",
            ])
            .await;
        assert_eq!(out.trim(), "pod/tools created");
        let pod = stored(&c, "", "pods", Some("team"), "tools");
        assert_eq!(pod["metadata"]["labels"], json!({"tier": "tools"}));
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["containers"][0]["env"], json!([{"name": "MODE", "value": "probe"}]), "{pod}");
        assert_eq!(pod["spec"]["containers"][0]["ports"], json!([{"containerPort": 9000, "protocol": "TCP"}]));

        let out = k.ok(&["expose", "deployment", "web", "-n", "team", "--port=80", "--target-port=8080"]).await;
        assert_eq!(out.trim(), "service/web exposed");
        let exposed = stored(&c, "", "services", Some("team"), "web");
        assert_eq!(exposed["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(exposed["spec"]["ports"][0]["port"], 80);
        assert_eq!(exposed["spec"]["ports"][0]["targetPort"], 8080);

        // kubectl prefers protobuf answers for built-in kinds, and reads the one it gets.
        let out = k.run(&["create", "configmap", "verbose", "-n", "team", "--from-literal=x=y", "-v=8"]).await;
        assert!(out.ok && out.stdout.trim() == "configmap/verbose created", "{}\n{}", out.stdout, out.stderr);
        let answer = out.stderr.split("\"Response Body\"").nth(1).unwrap_or_default();
        assert!(answer.contains("6b 38 73 00"), "the answer is not protobuf:\n{}", out.stderr);
        assert_eq!(stored(&c, "", "configmaps", Some("team"), "verbose")["data"], json!({"x": "y"}));

        // What was created reads back through kubectl in every output form.
        let table = k.ok(&["get", "deploy,svc,cm,secret", "-n", "team"]).await;
        for name in ["deployment.apps/web", "service/api", "service/web", "configmap/settings", "secret/creds"] {
            assert!(table.contains(name), "{name} missing in\n{table}");
        }
        let yaml = k.ok(&["get", "deployment", "web", "-n", "team", "-o", "yaml"]).await;
        assert!(yaml.contains("replicas: 3") && yaml.contains("image: nginx:1.27"), "{yaml}");
        let cm: Value =
            serde_json::from_str(&k.ok(&["get", "configmap", "settings", "-n", "team", "-o", "json"]).await).unwrap();
        assert_eq!(cm["data"]["color"], "blue");
        assert_eq!(
            k.ok(&["get", "secret", "creds", "-n", "team", "-o", "jsonpath={.data.password}"]).await,
            "aHVudGVyMg=="
        );
        assert!(k.ok(&["get", "ns", "team"]).await.contains("Active"));
        c.shutdown().await;
    })
    .await
    .expect("kubectl commands finish in time");
}
