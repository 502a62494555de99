//! The deployment files say what the README says they do: the compose file brings up
//! the services it names around a valid pipeline, the Kubernetes example wires the
//! cluster flags to the pod ordinal and the headless service, the systemd unit and the
//! Dockerfile run tracktable unprivileged with time to stop cleanly.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A pipeline file's text, parsed and validated as `run` would.
fn validates(text: &str, name: &str) {
    tracktable::config::PipelineFile::parse(text, Path::new(name))
        .and_then(|file| file.validate(Path::new(name)))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn compose_runs_tracktable_beside_postgres_and_the_emulator() {
    let docs = yaml("compose.yaml");
    let services = &docs[0]["services"];
    for name in ["postgres", "moto", "setup", "gen", "tracktable"] {
        assert!(!services[name].is_badvalue(), "compose.yaml has no {name}");
    }
    let tracktable = &services["tracktable"];
    assert_eq!(
        tracktable["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert_eq!(
        tracktable["depends_on"]["setup"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    assert_eq!(tracktable["command"][0].as_str(), Some("run"));
    let mount = tracktable["volumes"][0].as_str().unwrap_or_default();
    let (source, target) = mount.split_once(':').unwrap_or_default();
    assert_eq!(
        tracktable["environment"]["TRACKTABLE_PIPELINE"].as_str(),
        target.split(':').next()
    );
    let pipeline = read(source.trim_start_matches("./"));
    validates(&pipeline, source);
    // The pipeline reads the queue the setup creates, through the emulator.
    assert!(pipeline.contains("http://moto:5000/123456789012/events"));
    let setup = services["setup"]["command"][0].as_str().unwrap_or_default();
    assert!(
        setup.contains("create-queue --queue-name events"),
        "{setup}"
    );
    assert!(
        setup.contains("put-bucket-notification-configuration"),
        "{setup}"
    );
}

#[test]
fn the_kubernetes_example_wires_the_cluster_to_the_pod_ordinal() {
    let docs = yaml("deploy/kubernetes/tracktable.yaml");
    let kind = |kind: &str| {
        docs.iter()
            .find(|doc| doc["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let (config, service, set) = (kind("ConfigMap"), kind("Service"), kind("StatefulSet"));
    let spec = &set["spec"];
    assert_eq!(service["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        spec["serviceName"].as_str(),
        service["metadata"]["name"].as_str()
    );
    assert_eq!(spec["podManagementPolicy"].as_str(), Some("Parallel"));
    let replicas = spec["replicas"].as_i64().unwrap_or_default();
    assert!(replicas > 1);
    let pod = &spec["template"]["spec"];
    // A batch interval (30 s) plus one load, with room to spare.
    assert!(
        pod["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or_default()
            >= 60
    );
    let container = &pod["containers"][0];
    let env = |name: &str| {
        container["env"]
            .as_vec()
            .and_then(|env| env.iter().find(|var| var["name"].as_str() == Some(name)))
            .unwrap_or_else(|| panic!("no {name}"))
            .clone()
    };
    assert_eq!(
        env("TRACKTABLE_PROCESS")["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.labels['apps.kubernetes.io/pod-index']")
    );
    assert_eq!(
        env("TRACKTABLE_PROCESSES")["value"].as_str(),
        Some(replicas.to_string().as_str())
    );
    assert!(
        env("TRACKTABLE_WAREHOUSE_PASSWORD")["valueFrom"]["secretKeyRef"]
            .as_hash()
            .is_some()
    );
    // One hostfile line per pod, in ordinal order, through the headless service.
    let hosts: Vec<&str> = config["data"]["hosts.txt"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .collect();
    let service_name = service["metadata"]["name"].as_str().unwrap_or_default();
    assert_eq!(hosts.len() as i64, replicas);
    for (ordinal, line) in hosts.iter().enumerate() {
        assert_eq!(*line, format!("tracktable-{ordinal}.{service_name}:2101"));
    }
    let pipeline = config["data"]["pipeline.toml"].as_str().unwrap_or_default();
    validates(pipeline, "pipeline.toml");
    assert!(pipeline.contains("password_env = \"TRACKTABLE_WAREHOUSE_PASSWORD\""));
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/ready")
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/health")
    );
}

#[test]
fn the_systemd_unit_and_the_image_run_tracktable_unprivileged() {
    let unit = read("deploy/systemd/tracktable.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}="))
            .to_owned()
    };
    assert!(value("ExecStart").ends_with("tracktable run --log-format json"));
    assert_eq!(value("User"), "tracktable");
    assert_eq!(value("KillSignal"), "SIGTERM");
    assert!(value("TimeoutStopSec").parse::<u32>().unwrap_or_default() >= 60);

    let dockerfile = read("Dockerfile");
    assert_eq!(
        dockerfile
            .lines()
            .filter(|line| line.starts_with("FROM "))
            .count(),
        2
    );
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .unwrap_or_default();
    assert!(
        !user.is_empty() && user != "root" && user != "0",
        "USER {user}"
    );
    assert!(dockerfile.contains("ENTRYPOINT [\"tracktable\"]"));
}
