//! The deployment files (compose, Prometheus and Grafana provisioning, Kubernetes
//! manifests, Dockerfile) agree with each other and with cs-pulse: checked by
//! `tests/interop/deploy_check.py` (PyYAML, in the test command's `.cache/venv`), and the
//! ConfigMap's configuration by `cs-pulse check-config`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> String {
    std::env::var("CS_PULSE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("CS_PULSE_TEST_PYTHON is not set: run `bash tests/run-all.sh` (it installs PyYAML into .cache/venv)")
    })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy_check(root: &Path, toml_out: &Path) -> std::process::Output {
    Command::new(python())
        .arg(repo().join("tests/interop/deploy_check.py"))
        .arg(root)
        .arg(toml_out)
        .output()
        .expect("the test Python runs")
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cs-pulse-deploy-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
#[ignore = "needs the test Python with PyYAML: run `bash tests/run-all.sh`"]
fn deployment_files_agree_and_the_configmap_passes_check_config() {
    let dir = temp("ok");
    let toml = dir.join("configmap.toml");
    let out = deploy_check(&repo(), &toml);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let check = common::cs_pulse().args(["check-config", "--config"]).arg(&toml).output().expect("check-config runs");
    assert!(check.status.success(), "the ConfigMap's cs-pulse.toml: {}", String::from_utf8_lossy(&check.stderr));
    let effective = String::from_utf8_lossy(&check.stdout);
    assert!(effective.contains("bind = \"0.0.0.0:9464\"") && effective.contains("format = \"json\""), "{effective}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs the test Python with PyYAML: run `bash tests/run-all.sh`"]
fn a_deployment_that_disagrees_is_caught() {
    // A copy of the files with the readiness probe on the wrong path and the Service
    // selecting other pods.
    let dir = temp("broken");
    std::fs::copy(repo().join("Dockerfile"), dir.join("Dockerfile")).expect("copy");
    copy_tree(&repo().join("deploy"), &dir.join("deploy"));
    let dep = dir.join("deploy/k8s/deployment.yaml");
    let text = std::fs::read_to_string(&dep).expect("deployment.yaml");
    std::fs::write(&dep, text.replace("path: /readyz", "path: /ready")).expect("write");
    let svc = dir.join("deploy/k8s/service.yaml");
    let text = std::fs::read_to_string(&svc).expect("service.yaml");
    std::fs::write(&svc, text.replace("app.kubernetes.io/name: cs-pulse\n  ports", "app: other\n  ports"))
        .expect("write");
    let out = deploy_check(&dir, &dir.join("configmap.toml"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the broken copy passed");
    assert!(err.contains("readiness is not /readyz"), "{err}");
    assert!(err.contains("the Service does not select the pods"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}
