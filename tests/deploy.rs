//! The deployment files (`deploy/`) against the binary they run and the tools that judge
//! them. Needs no services; needs Go (kubeconform and the rule checker are built with it,
//! into `.dev/tools/`, on first use).
//!
//! * Kubernetes (`deploy/k8s/`): every manifest passes kubeconform in strict mode against
//!   the Kubernetes 1.35.4 API schemas. kubeconform fetches its schemas from GitHub by
//!   default, which this machine cannot reach; the schemas are generated here instead from
//!   the OpenAPI document (`api/openapi-spec/swagger.json`) of the `k8s.io/kubernetes` Go
//!   module, converted as kubeconform's own `openapi2jsonschema` script does (references
//!   inlined, strict: unknown fields refused). Then the shape this project needs: processors in a
//!   StatefulSet whose pod name is the instance id, each sink name exactly once, push with
//!   an HPA and a PDB, probes on the ports and paths each stage really serves, secrets from
//!   Secrets, grace periods, resource requests.
//! * Compose (`deploy/compose/`): every service's command is accepted by the binary, every
//!   STRIKEFLOW_* variable names a real setting, images are pinned, Prometheus scrapes every
//!   stage, the proxy fronts every push node.
//! * Every command and variable in both is checked by running the binary: the subcommand
//!   and flags with `--help` appended (clap refuses an unknown subcommand or flag before it
//!   prints help), the environment with `strikeflow token`, which loads and validates the
//!   whole configuration (an unknown key is refused, naming it) and connects to nothing.
//! * Observability: the alert rules pass Prometheus's own rule parser (`tests/promcheck`,
//!   the checks of `promtool check rules` without promtool's service-discovery build,
//!   which takes minutes), every dashboard query parses as PromQL, and every metric they
//!   name is documented in `docs/metrics.md` (or, for the two from outside the binary, in
//!   `docs/operations.md`). Every alert has its section in `docs/operations.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde::Deserialize as _;
use serde_json::{json, Map, Value as Json};
use serde_yaml::Value as Yaml;

/// The Kubernetes version whose API the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.35.4";
/// kubeconform, built from the Go module proxy.
const KUBECONFORM: &str = "github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0";
/// A secret as long as push and the API demand off loopback (stands in for the Secret).
const TEST_SECRET: &str = "deploy-test-secret-0123456789abcdef0123456789abcdef";
/// Every output a sink can store (`sink.topics`).
const SINK_OUTPUTS: [&str; 8] = [
    "instruments",
    "ticks",
    "bars",
    "strikes",
    "chains",
    "moneyness",
    "indicators",
    "late_ticks",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every YAML document of a file, with `<<` merge keys applied (compose uses them).
fn yaml_documents(relative: &str) -> Vec<Yaml> {
    let text = read(relative);
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = Yaml::deserialize(document)
                .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{relative}: merge keys: {e}"));
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn yaml_str<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    yaml_at(value, path).and_then(Yaml::as_str)
}

fn yaml_at<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

/// A YAML scalar as the string a container would see in its environment.
fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(value: Option<&Yaml>) -> Vec<String> {
    value
        .and_then(Yaml::as_sequence)
        .map(|items| items.iter().map(scalar).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The binary as the judge of commands and settings
// ---------------------------------------------------------------------------------------

/// The binary with nothing inherited that could decide a setting.
fn strikeflow() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strikeflow"));
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Whether the binary accepts `args` as a command line: the subcommand path and every
/// flag (and its value) as written, with `--help` appended so nothing runs.
fn command_accepted(args: &[String]) -> Result<(), String> {
    let output = strikeflow()
        .args(args)
        .arg("--help")
        .output()
        .expect("running strikeflow --help");
    if output.status.success() {
        Ok(())
    } else {
        Err(describe(&output))
    }
}

/// Whether the binary accepts `env` as its configuration: `strikeflow token` loads the
/// defaults, the environment (an unknown STRIKEFLOW_ key is an error naming it) and checks
/// every value, then mints a token without connecting to anything. A metrics listener in
/// `env` is checked to be an address and then moved to an ephemeral loopback port, so the
/// check binds nothing public and never collides.
fn settings_accepted(env: &BTreeMap<String, String>) -> Result<(), String> {
    let mut env = env.clone();
    if let Some(listen) = env.get_mut("STRIKEFLOW_TELEMETRY__METRICS_LISTEN") {
        if !listen.is_empty() {
            listen
                .parse::<SocketAddr>()
                .map_err(|e| format!("STRIKEFLOW_TELEMETRY__METRICS_LISTEN={listen}: {e}"))?;
            *listen = "127.0.0.1:0".to_owned();
        }
    }
    let output = strikeflow()
        .args(["token", "--sub", "deploy-check"])
        .envs(&env)
        .output()
        .expect("running strikeflow token");
    if output.status.success() {
        Ok(())
    } else {
        Err(describe(&output))
    }
}

/// The port of an address setting such as `0.0.0.0:9464`.
fn port_of(address: &str) -> u16 {
    address
        .parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{address:?} is not host:port: {e}"))
        .port()
}

#[test]
fn the_judges_refuse_what_does_not_exist() {
    // If these passed, every check of commands and settings below would prove nothing.
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(command_accepted(&args(&["ingest", "simulate", "--rate", "2000"])).is_ok());
    assert!(command_accepted(&args(&["procss"])).is_err());
    assert!(command_accepted(&args(&["ingest", "simulate", "--no-such-flag"])).is_err());
    assert!(command_accepted(&args(&["migrate", "--lock-timeout-secs", "soon"])).is_err());

    let env = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    assert!(settings_accepted(&env(&[("STRIKEFLOW_SINK__BATCH_ROWS", "5000")])).is_ok());
    let refused = settings_accepted(&env(&[("STRIKEFLOW_SINK__BATCH_ROWZ", "5000")]))
        .expect_err("an unknown key must be refused");
    assert!(refused.contains("sink.batch_rowz"), "{refused}");
    // What Kubernetes injects for a Service named strikeflow-push unless service links are
    // off: the reason every pod spec below sets enableServiceLinks: false.
    assert!(settings_accepted(&env(&[("STRIKEFLOW_PUSH_SERVICE_HOST", "10.0.0.1")])).is_err());
    assert!(settings_accepted(&env(&[(
        "STRIKEFLOW_TELEMETRY__METRICS_LISTEN",
        "everywhere"
    )]))
    .is_err());
}

// ---------------------------------------------------------------------------------------
// Go tools
// ---------------------------------------------------------------------------------------

fn tools_dir() -> PathBuf {
    let dir = root().join(".dev/tools");
    std::fs::create_dir_all(&dir).expect("creating .dev/tools");
    dir
}

/// The `go` command, or a failure that says what is missing.
fn go() -> Command {
    let candidates = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("go"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let go = candidates
        .into_iter()
        .chain([PathBuf::from("/usr/local/go/bin/go")])
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Go is not installed (no `go` on PATH or in /usr/local/go/bin): tests/deploy.rs \
                 builds kubeconform and the rule checker tests/promcheck with it. Install Go \
                 1.26 or newer and run the test again."
            )
        });
    Command::new(go)
}

fn run_go(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        describe(&output)
    );
}

/// kubeconform in `.dev/tools`, installed with `go install` when missing.
fn kubeconform() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let dir = tools_dir();
        let tool = dir.join("kubeconform");
        // `kubeconform -v` says "development" for a `go install`ed build; the module
        // version is in the binary's build information.
        let (module, version) = KUBECONFORM
            .split_once("/cmd/")
            .and_then(|(module, rest)| Some((module, rest.split_once('@')?.1)))
            .expect("module@version");
        let current = tool.is_file()
            && go()
                .args(["version", "-m"])
                .arg(&tool)
                .output()
                .is_ok_and(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .any(|l| l.contains(module) && l.contains(version))
                });
        if !current {
            let mut install = go();
            install.args(["install", KUBECONFORM]).env("GOBIN", &dir);
            run_go(install, &format!("go install {KUBECONFORM}"));
        }
        tool
    })
}

/// The rule and PromQL checker of `tests/promcheck`, built into `.dev/tools`.
fn promcheck() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let tool = tools_dir().join("promcheck");
        // Always rebuilt: Go's build cache makes an unchanged build take a second.
        let mut build = go();
        build
            .current_dir(root().join("tests/promcheck"))
            .args(["build", "-o"])
            .arg(&tool)
            .arg(".");
        run_go(build, "go build tests/promcheck");
        tool
    })
}

// ---------------------------------------------------------------------------------------
// Kubernetes schemas: the OpenAPI document of k8s.io/kubernetes as kubeconform schemas
// ---------------------------------------------------------------------------------------

/// `swagger.json` of the Kubernetes release, from the Go module cache.
fn kubernetes_openapi() -> &'static Json {
    static SPEC: OnceLock<Json> = OnceLock::new();
    SPEC.get_or_init(|| {
        let mut download = go();
        download
            .current_dir(std::env::temp_dir())
            .args(["mod", "download", "-json"])
            .arg(format!("k8s.io/kubernetes@v{KUBERNETES_VERSION}"));
        let output = download.output().expect("running go mod download");
        assert!(
            output.status.success(),
            "go mod download k8s.io/kubernetes failed: {}",
            describe(&output)
        );
        let info: Json = serde_json::from_slice(&output.stdout).expect("go mod download -json");
        let dir = info["Dir"].as_str().expect("the module's directory");
        let spec = Path::new(dir).join("api/openapi-spec/swagger.json");
        let text = std::fs::read_to_string(&spec)
            .unwrap_or_else(|e| panic!("reading {}: {e}", spec.display()));
        serde_json::from_str(&text).expect("swagger.json")
    })
}

/// Where the generated schemas live, in the layout kubeconform's `-schema-location`
/// template expects.
fn schema_dir() -> PathBuf {
    // The directory name carries the generator's version, so a change below never meets
    // files an older one wrote.
    tools_dir().join("k8s-schemas-2")
}

/// kubeconform's name for the schema of `kind` in `api_version` (its `schemaPath`).
fn schema_file_name(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let suffix = if group.is_empty() {
        format!("-{}", version.to_lowercase())
    } else {
        let first = group.split('.').next().unwrap_or(group);
        format!("-{}-{}", first.to_lowercase(), version.to_lowercase())
    };
    format!("{}{suffix}.json", kind.to_lowercase())
}

/// Writes the standalone strict schema of every `(apiVersion, kind)` asked for.
fn ensure_schemas(kinds: &BTreeSet<(String, String)>) {
    let dir = schema_dir().join(format!("v{KUBERNETES_VERSION}-standalone-strict"));
    std::fs::create_dir_all(&dir).expect("creating the schema directory");
    let missing: Vec<_> = kinds
        .iter()
        .filter(|(v, k)| !dir.join(schema_file_name(v, k)).is_file())
        .collect();
    if missing.is_empty() {
        return;
    }
    let definitions = kubernetes_openapi()["definitions"]
        .as_object()
        .expect("definitions");
    for (api_version, kind) in missing {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let name = definitions
            .iter()
            .find(|(_, def)| {
                def["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|gvks| {
                        gvks.iter().any(|gvk| {
                            gvk["group"] == group
                                && gvk["version"] == version
                                && gvk["kind"] == *kind
                        })
                    })
            })
            .map(|(name, _)| name.clone())
            .unwrap_or_else(|| {
                panic!("Kubernetes {KUBERNETES_VERSION} has no {api_version} {kind}")
            });
        let mut schema = standalone(definitions, &name, &mut Vec::new());
        schema
            .as_object_mut()
            .expect("an object schema")
            .insert("$schema".into(), json!("http://json-schema.org/schema#"));
        // Written whole, then renamed: a parallel test never reads half a file.
        let path = dir.join(schema_file_name(api_version, kind));
        let partial = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&partial, serde_json::to_vec(&schema).expect("json")).expect("writing");
        std::fs::rename(&partial, &path).expect("renaming");
    }
}

/// The definition `name` with every `$ref` inlined (a recursive one, as in CRD schemas,
/// accepts anything at the point it recurs), strict like openapi2jsonschema `--strict`:
/// objects with declared properties refuse others; an IntOrString is a string or an
/// integer and a Quantity a string or a number, as the API server accepts them.
fn standalone(definitions: &Map<String, Json>, name: &str, stack: &mut Vec<String>) -> Json {
    match name {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            return json!({"oneOf": [{"type": "string"}, {"type": "integer"}]})
        }
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => {
            return json!({"oneOf": [{"type": "string"}, {"type": "number"}]})
        }
        _ => {}
    }
    if stack.iter().any(|n| n == name) {
        return json!({});
    }
    stack.push(name.to_owned());
    let schema = strict(definitions, &definitions[name], stack);
    stack.pop();
    schema
}

fn strict(definitions: &Map<String, Json>, schema: &Json, stack: &mut Vec<String>) -> Json {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    if let Some(reference) = object.get("$ref").and_then(Json::as_str) {
        let name = reference.trim_start_matches("#/definitions/");
        return standalone(definitions, name, stack);
    }
    let mut out = Map::new();
    for (key, value) in object {
        let value = match key.as_str() {
            "properties" => Json::Object(
                value
                    .as_object()
                    .expect("properties")
                    .iter()
                    .map(|(p, s)| (p.clone(), strict(definitions, s, stack)))
                    .collect(),
            ),
            "items" | "additionalProperties" if value.is_object() => {
                strict(definitions, value, stack)
            }
            "allOf" | "anyOf" | "oneOf" => Json::Array(
                value
                    .as_array()
                    .expect("a list of schemas")
                    .iter()
                    .map(|s| strict(definitions, s, stack))
                    .collect(),
            ),
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    if out.contains_key("properties") && !out.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), json!(false));
    }
    Json::Object(out)
}

/// Runs kubeconform (strict, no schema may be missing) over `files`; returns its JSON
/// summary or the failure.
fn kubeconform_check(files: &[PathBuf]) -> Result<Json, String> {
    let mut kinds = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("reading a manifest");
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = Yaml::deserialize(document).expect("YAML");
            if value.is_null() {
                continue;
            }
            let api_version = yaml_str(&value, &["apiVersion"]).expect("apiVersion");
            let kind = yaml_str(&value, &["kind"]).expect("kind");
            kinds.insert((api_version.to_owned(), kind.to_owned()));
        }
    }
    ensure_schemas(&kinds);
    let location = format!(
        "{}/{{{{ .NormalizedKubernetesVersion }}}}-standalone{{{{ .StrictSuffix }}}}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        schema_dir().display()
    );
    let output = Command::new(kubeconform())
        .args(["-strict", "-summary", "-output", "json"])
        .args(["-kubernetes-version", KUBERNETES_VERSION])
        .args(["-schema-location", &location])
        .args(files)
        .output()
        .expect("running kubeconform");
    let report: Json = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("kubeconform printed no JSON ({e}): {}", describe(&output)))?;
    if output.status.success() {
        Ok(report)
    } else {
        Err(serde_json::to_string_pretty(&report).unwrap_or_default())
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

/// The manifests `deploy/k8s/kustomization.yaml` lists, which must be every other YAML
/// file of the directory.
fn k8s_files() -> Vec<PathBuf> {
    let kustomization = yaml_documents("deploy/k8s/kustomization.yaml");
    let listed: BTreeSet<String> = strings(kustomization[0].get("resources"))
        .into_iter()
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(root().join("deploy/k8s"))
        .expect("deploy/k8s")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "deploy/k8s/kustomization.yaml must list exactly the manifests of deploy/k8s"
    );
    listed
        .iter()
        .map(|n| root().join("deploy/k8s").join(n))
        .collect()
}

fn k8s_objects() -> Vec<Yaml> {
    k8s_files()
        .iter()
        .flat_map(|path| {
            let relative = path.strip_prefix(root()).expect("under the repository");
            yaml_documents(relative.to_str().expect("utf-8 path"))
        })
        .collect()
}

#[test]
fn k8s_manifests_pass_kubeconform_against_the_kubernetes_schemas() {
    let files = k8s_files();
    let report = kubeconform_check(&files)
        .unwrap_or_else(|failure| panic!("kubeconform refused deploy/k8s:\n{failure}"));
    let summary = &report["summary"];
    let documents = k8s_objects().len() as u64;
    assert_eq!(summary["valid"], json!(documents), "{report}");
    assert_eq!(
        summary["skipped"],
        json!(0),
        "no schema may be missing: {report}"
    );

    // The same run refuses what the API server would: an unknown field and a wrong type.
    let bad =
        std::env::temp_dir().join(format!("strikeflow-deploy-bad-{}.yaml", std::process::id()));
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  replicaz: 2\n  \
         selector: {matchLabels: {app: bad}}\n  template:\n    metadata: {labels: {app: bad}}\n    \
         spec:\n      containers:\n        - name: bad\n          image: bad:1\n          \
         ports: [{containerPort: eighty}]\n",
    )
    .expect("writing the bad manifest");
    let refused = kubeconform_check(std::slice::from_ref(&bad));
    let _ = std::fs::remove_file(&bad);
    let failure = refused.expect_err("kubeconform accepted a manifest with an unknown field");
    assert!(failure.contains("replicaz"), "{failure}");
    assert!(failure.contains("containerPort"), "{failure}");
}

/// A pod template's containers' settings, as the binary would see them: the image's, the
/// ConfigMap's variables, then the container's own (a Secret's value replaced by a stand-in of the
/// right shape, a pod field by what Kubernetes would put there).
fn container_env(
    container: &Yaml,
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
    pod_name: &str,
) -> BTreeMap<String, String> {
    let mut env = image_env();
    for source in container
        .get("envFrom")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        let name = yaml_str(source, &["configMapRef", "name"]).expect("envFrom a ConfigMap");
        let data = config_maps.get(name).unwrap_or_else(|| {
            panic!("envFrom names ConfigMap {name}, which is not in deploy/k8s")
        });
        env.extend(data.clone());
    }
    for var in container
        .get("env")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        let name = yaml_str(var, &["name"]).expect("env name").to_owned();
        let value = if let Some(value) = var.get("value") {
            scalar(value)
        } else if let Some(key) = yaml_str(var, &["valueFrom", "secretKeyRef", "key"]) {
            match key {
                "database-url" => "postgres://strikeflow:pw@db.example:5432/strikeflow".into(),
                "redis-url" => "redis://redis.example:6379".into(),
                "jwt-secret" => TEST_SECRET.into(),
                other => panic!("{name}: unknown key {other} of the Secret"),
            }
        } else if yaml_str(var, &["valueFrom", "fieldRef", "fieldPath"]) == Some("metadata.name") {
            pod_name.to_owned()
        } else {
            panic!("{name}: a value source this test does not know")
        };
        env.insert(name, value);
    }
    env
}

/// A probe's path and (named or numbered) port, resolved to a number.
fn probe(container: &Yaml, which: &str) -> Option<(String, u16)> {
    let get = container.get(which)?.get("httpGet")?;
    let path = yaml_str(get, &["path"]).expect("probe path").to_owned();
    let port = match get.get("port").expect("probe port") {
        Yaml::Number(n) => n.as_u64().expect("port") as u16,
        Yaml::String(name) => container_port(container, name)
            .unwrap_or_else(|| panic!("probe names port {name}, which the container lacks")),
        other => panic!("probe port {other:?}"),
    };
    Some((path, port))
}

fn container_port(container: &Yaml, name: &str) -> Option<u16> {
    container
        .get("ports")?
        .as_sequence()?
        .iter()
        .find(|p| yaml_str(p, &["name"]) == Some(name))
        .and_then(|p| p.get("containerPort")?.as_u64())
        .map(|p| p as u16)
}

/// One Deployment, StatefulSet or Job of `deploy/k8s`, with its container's settings as
/// the binary would see them.
struct Workload {
    kind: String,
    name: String,
    /// The whole object.
    object: Yaml,
    /// `spec.template.spec`.
    pod: Yaml,
    /// The one container.
    container: Yaml,
    /// `strikeflow <args>`: the stage is the first.
    args: Vec<String>,
    /// The container's environment (ConfigMap, then its own variables).
    env: BTreeMap<String, String>,
    /// The pod's name (a StatefulSet's first pod).
    pod_name: String,
}

impl Workload {
    fn stage(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or_default()
    }

    fn replicas(&self) -> Option<u64> {
        yaml_at(&self.object, &["spec", "replicas"]).and_then(Yaml::as_u64)
    }
}

fn kind_of(object: &Yaml) -> &str {
    yaml_str(object, &["kind"]).unwrap_or_default()
}

fn name_of(object: &Yaml) -> &str {
    yaml_str(object, &["metadata", "name"]).unwrap_or_default()
}

/// The ConfigMaps of `deploy/k8s` by name, as key-value maps.
fn config_maps(objects: &[Yaml]) -> BTreeMap<String, BTreeMap<String, String>> {
    objects
        .iter()
        .filter(|o| kind_of(o) == "ConfigMap")
        .map(|o| {
            let data = o
                .get("data")
                .and_then(Yaml::as_mapping)
                .into_iter()
                .flatten()
                .map(|(k, v)| (scalar(k), scalar(v)))
                .collect();
            (name_of(o).to_owned(), data)
        })
        .collect()
}

fn workloads(objects: &[Yaml]) -> Vec<Workload> {
    let config_maps = config_maps(objects);
    objects
        .iter()
        .filter(|o| ["Deployment", "StatefulSet", "Job"].contains(&kind_of(o)))
        .map(|object| {
            let (kind, name) = (kind_of(object).to_owned(), name_of(object).to_owned());
            let pod = yaml_at(object, &["spec", "template", "spec"])
                .unwrap_or_else(|| panic!("{name}: no pod template"))
                .clone();
            let containers = pod
                .get("containers")
                .and_then(Yaml::as_sequence)
                .expect("containers");
            assert_eq!(containers.len(), 1, "{name}: one container");
            let container = containers[0].clone();
            assert!(
                container.get("command").is_none(),
                "{name}: the image's entrypoint is strikeflow; give `args`"
            );
            let pod_name = if kind == "StatefulSet" {
                format!("{name}-0")
            } else {
                name.clone()
            };
            Workload {
                args: strings(container.get("args")),
                env: container_env(&container, &config_maps, &pod_name),
                kind,
                name,
                object: object.clone(),
                pod,
                container,
                pod_name,
            }
        })
        .collect()
}

#[test]
fn k8s_workloads_run_commands_and_settings_the_binary_accepts_with_secrets_from_secrets() {
    let objects = k8s_objects();
    const SECRETS: [&str; 4] = [
        "DATABASE_URL",
        "REDIS_URL",
        "STRIKEFLOW_JWT_SECRET",
        "KITE_ACCESS_TOKEN",
    ];
    for (name, data) in config_maps(&objects) {
        for (key, value) in data {
            let credentials = value.contains("://") && value.contains('@');
            assert!(
                !SECRETS.contains(&key.as_str()) && !credentials,
                "ConfigMap {name} holds {key}: credentials belong in a Secret"
            );
        }
    }
    let workloads = workloads(&objects);
    for w in &workloads {
        let name = &w.name;
        command_accepted(&w.args).unwrap_or_else(|e| {
            panic!(
                "{} {name}: strikeflow {:?} is refused:\n{e}",
                w.kind, w.args
            )
        });
        settings_accepted(&w.env)
            .unwrap_or_else(|e| panic!("{} {name}: its environment is refused:\n{e}", w.kind));
        assert_eq!(
            w.pod.get("enableServiceLinks").and_then(Yaml::as_bool),
            Some(false),
            "{name}: Kubernetes would inject STRIKEFLOW_*_SERVICE_HOST variables, which the \
             binary refuses as unknown settings"
        );
        assert_eq!(
            yaml_at(&w.pod, &["securityContext", "runAsNonRoot"]).and_then(Yaml::as_bool),
            Some(true),
            "{name} must run as non-root"
        );
        // The namespace enforces the `restricted` Pod Security profile.
        let security = w.container.get("securityContext");
        assert!(
            security.is_some_and(|c| {
                c.get("allowPrivilegeEscalation").and_then(Yaml::as_bool) == Some(false)
                    && strings(yaml_at(c, &["capabilities", "drop"])) == ["ALL"]
            }) && yaml_str(&w.pod, &["securityContext", "seccompProfile", "type"])
                == Some("RuntimeDefault"),
            "{name}: not within the restricted Pod Security profile"
        );
        for secret in ["DATABASE_URL", "REDIS_URL", "STRIKEFLOW_JWT_SECRET"] {
            let var = w
                .container
                .get("env")
                .and_then(Yaml::as_sequence)
                .and_then(|vars| vars.iter().find(|v| yaml_str(v, &["name"]) == Some(secret)));
            if let Some(var) = var {
                assert!(
                    yaml_at(var, &["valueFrom", "secretKeyRef"]).is_some(),
                    "{name}: {secret} must come from a Secret"
                );
            }
        }
        let requests = yaml_at(&w.container, &["resources", "requests"]);
        assert!(
            requests.is_some_and(|r| r.get("cpu").is_some() && r.get("memory").is_some()),
            "{name}: cpu and memory requests"
        );
    }
    let stages: BTreeSet<&str> = workloads.iter().map(Workload::stage).collect();
    for stage in ["migrate", "ingest", "process", "sink", "push", "api"] {
        assert!(
            stages.contains(stage),
            "no workload runs `strikeflow {stage}`"
        );
    }
    for w in workloads.iter().filter(|w| w.kind == "Job") {
        assert_eq!(w.stage(), "migrate", "{}: the only Job is migrate", w.name);
    }
}

#[test]
fn k8s_probes_and_metrics_are_where_each_stage_serves_them() {
    for w in workloads(&k8s_objects()).iter().filter(|w| w.kind != "Job") {
        let name = &w.name;
        // Every long-running stage serves metrics on all interfaces, where its `metrics`
        // port and its scrape annotation say.
        let metrics = w
            .env
            .get("STRIKEFLOW_TELEMETRY__METRICS_LISTEN")
            .unwrap_or_else(|| panic!("{name}: no metrics listener configured"));
        assert!(
            metrics.starts_with("0.0.0.0:"),
            "{name}: metrics on all interfaces"
        );
        let metrics_port = port_of(metrics);
        assert_eq!(
            container_port(&w.container, "metrics"),
            Some(metrics_port),
            "{name}: metrics port"
        );
        let annotations = yaml_at(&w.object, &["spec", "template", "metadata", "annotations"]);
        assert_eq!(
            annotations.and_then(|a| yaml_str(a, &["prometheus.io/port"])),
            Some(metrics_port.to_string().as_str()),
            "{name}: scrape annotation"
        );

        // Push and the API serve /healthz and /readyz on their own listener; the other
        // stages serve only the metrics exporter, whose /health answers while the process
        // runs.
        let liveness = probe(&w.container, "livenessProbe")
            .unwrap_or_else(|| panic!("{name}: no liveness probe"));
        let readiness = probe(&w.container, "readinessProbe");
        match w.stage() {
            stage @ ("push" | "api") => {
                let var = format!("STRIKEFLOW_{}__LISTEN", stage.to_uppercase());
                let listen = w
                    .env
                    .get(&var)
                    .unwrap_or_else(|| panic!("{name}: {var} (the default is loopback)"));
                assert!(listen.starts_with("0.0.0.0:"), "{name}: {var}={listen}");
                let port = port_of(listen);
                assert_eq!(liveness, ("/healthz".to_owned(), port), "{name}: liveness");
                assert_eq!(
                    readiness,
                    Some(("/readyz".to_owned(), port)),
                    "{name}: readiness"
                );
            }
            _ => {
                let health = ("/health".to_owned(), metrics_port);
                assert_eq!(liveness, health, "{name}: liveness");
                if let Some(readiness) = readiness {
                    assert_eq!(readiness, health, "{name}: readiness");
                }
            }
        }
    }
}

/// The `sleep` of a container's preStop hook, in seconds (0 without one).
fn pre_stop_secs(container: &Yaml) -> u64 {
    let Some(command) = yaml_at(container, &["lifecycle", "preStop", "exec", "command"]) else {
        return 0;
    };
    match strings(Some(command)).as_slice() {
        [sleep, secs] if sleep == "sleep" => secs.parse().expect("preStop sleep seconds"),
        other => panic!("a preStop hook this test does not know: {other:?}"),
    }
}

#[test]
fn k8s_stages_have_the_shape_their_semantics_need() {
    let objects = k8s_objects();
    let mut sink_outputs = Vec::new();
    let mut sink_names = BTreeSet::new();
    for w in workloads(&objects).iter().filter(|w| w.kind != "Job") {
        let name = &w.name;
        // Grace periods matched to each stage's drain on SIGTERM: processors finish a Kafka
        // transaction (each step may take up to 30 s) and write a final snapshot; sinks
        // commit their batch; push closes its clients (5 s for the close frames) and the
        // API its requests (statement timeout 5 s) after their preStop pause.
        let grace = w
            .pod
            .get("terminationGracePeriodSeconds")
            .and_then(Yaml::as_u64)
            .unwrap_or_else(|| panic!("{name}: terminationGracePeriodSeconds"));
        let drain = match w.stage() {
            "process" | "sink" => 60,
            "push" | "api" => {
                let pause = pre_stop_secs(&w.container);
                assert!(
                    pause > 0,
                    "{name}: a preStop pause lets the Service drop the pod first"
                );
                pause + 5 + 10
            }
            _ => 30,
        };
        assert!(
            grace >= drain,
            "{name}: {grace} s of grace for a {drain} s drain"
        );

        match w.stage() {
            "process" => {
                assert_eq!(w.kind, "StatefulSet", "processors need stable identities");
                assert_eq!(
                    w.env.get("STRIKEFLOW_PROCESSOR__INSTANCE_ID"),
                    Some(&w.pod_name),
                    "{name}: the instance id (and so the transactional id) is the pod name"
                );
                assert!(
                    w.replicas().is_some_and(|r| (1..=6).contains(&r)),
                    "{name}: 1 to 6 processors (6 ticks partitions)"
                );
            }
            "sink" => {
                assert_eq!(w.replicas(), Some(1), "{name}: one sink per name");
                assert_eq!(
                    yaml_str(&w.object, &["spec", "strategy", "type"]),
                    Some("Recreate"),
                    "{name}: a second sink of the same name refuses to start"
                );
                let sink_name = w
                    .env
                    .get("STRIKEFLOW_SINK__CONSUMER_NAME")
                    .cloned()
                    .unwrap_or_else(|| "sink".to_owned());
                assert!(
                    sink_names.insert(sink_name.clone()),
                    "sink name {sink_name} twice"
                );
                let topics = w.env.get("STRIKEFLOW_SINK__TOPICS").unwrap_or_else(|| {
                    panic!("{name}: name its outputs (STRIKEFLOW_SINK__TOPICS)")
                });
                let topics: Vec<String> =
                    serde_json::from_str(topics).expect("STRIKEFLOW_SINK__TOPICS as a list");
                sink_outputs.extend(topics);
            }
            "ingest" => {
                assert_eq!(
                    w.replicas(),
                    Some(1),
                    "{name}: two feeds publish every tick twice"
                );
            }
            _ => {}
        }
    }
    sink_outputs.sort();
    let mut all: Vec<String> = SINK_OUTPUTS.iter().map(|s| s.to_string()).collect();
    all.sort();
    assert_eq!(sink_outputs, all, "every output stored by exactly one sink");

    // Push autoscales; push and the processors are protected from voluntary disruption.
    let selects = |o: &Yaml, target: &str| {
        yaml_str(
            o,
            &["spec", "selector", "matchLabels", "app.kubernetes.io/name"],
        ) == Some(target)
    };
    let hpa = objects
        .iter()
        .find(|o| kind_of(o) == "HorizontalPodAutoscaler")
        .expect("an HPA");
    assert_eq!(
        yaml_str(hpa, &["spec", "scaleTargetRef", "kind"]),
        Some("Deployment")
    );
    assert_eq!(
        yaml_str(hpa, &["spec", "scaleTargetRef", "name"]),
        Some("strikeflow-push")
    );
    for target in ["strikeflow-push", "strikeflow-processor"] {
        assert!(
            objects
                .iter()
                .any(|o| kind_of(o) == "PodDisruptionBudget" && selects(o, target)),
            "no PodDisruptionBudget for {target}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Compose
// ---------------------------------------------------------------------------------------

/// Compose's variable interpolation, for the forms compose.yaml uses: `${VAR:?message}`
/// (required: a stand-in value), `${VAR:-default}`, `$$`.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').expect("unclosed ${");
            let expression = &body[..end];
            let value = if let Some((name, _)) = expression.split_once(":?") {
                match name {
                    "STRIKEFLOW_JWT_SECRET" => TEST_SECRET.to_owned(),
                    other => panic!("compose requires ${other}, which this test does not know"),
                }
            } else if let Some((_, default)) = expression.split_once(":-") {
                default.to_owned()
            } else {
                panic!("${{{expression}}} without a default or a requirement")
            };
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            panic!("a bare $ in {text:?}");
        }
    }
    out.push_str(rest);
    out
}

struct Compose {
    services: BTreeMap<String, Yaml>,
}

impl Compose {
    /// The full stack, `deploy/compose/compose.yaml`.
    fn load() -> Self {
        Self::load_file("deploy/compose/compose.yaml")
    }

    fn load_file(relative: &str) -> Self {
        let document = yaml_documents(relative).remove(0);
        let services = document
            .get("services")
            .and_then(Yaml::as_mapping)
            .expect("services")
            .iter()
            .map(|(name, service)| (scalar(name), service.clone()))
            .collect();
        Self { services }
    }

    /// The services that run the strikeflow image.
    fn strikeflow(&self) -> impl Iterator<Item = (&String, &Yaml)> {
        self.services
            .iter()
            .filter(|(_, s)| yaml_str(s, &["image"]).is_some_and(|i| i.starts_with("strikeflow:")))
    }

    fn command(service: &Yaml) -> Vec<String> {
        strings(service.get("command"))
    }

    /// A strikeflow service's environment: the image's, then the service's own.
    fn env(service: &Yaml) -> BTreeMap<String, String> {
        let mut env = image_env();
        env.extend(
            service
                .get("environment")
                .and_then(Yaml::as_mapping)
                .into_iter()
                .flatten()
                .map(|(k, v)| (scalar(k), interpolate(&scalar(v)))),
        );
        env
    }
}

#[test]
fn compose_commands_and_settings_exist_in_the_binary() {
    // The single-process file of the laptop topology runs the same binary.
    let laptop = Compose::load_file("deploy/docker-compose.yml");
    for (name, service) in laptop.strikeflow() {
        let command = Compose::command(service);
        command_accepted(&command).unwrap_or_else(|e| {
            panic!("deploy/docker-compose.yml {name}: strikeflow {command:?} is refused:\n{e}")
        });
        settings_accepted(&Compose::env(service)).unwrap_or_else(|e| {
            panic!("deploy/docker-compose.yml {name}: its environment is refused:\n{e}")
        });
    }

    let compose = Compose::load();
    let mut stages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut instance_ids = BTreeSet::new();
    for (name, service) in compose.strikeflow() {
        let command = Compose::command(service);
        command_accepted(&command)
            .unwrap_or_else(|e| panic!("service {name}: strikeflow {command:?} is refused:\n{e}"));
        let env = Compose::env(service);
        settings_accepted(&env)
            .unwrap_or_else(|e| panic!("service {name}: its environment is refused:\n{e}"));
        let stage = command.first().cloned().unwrap_or_default();
        if stage == "process" {
            let id = env
                .get("STRIKEFLOW_PROCESSOR__INSTANCE_ID")
                .unwrap_or_else(|| panic!("{name}: a stable instance id"));
            assert!(
                instance_ids.insert(id.clone()),
                "processor instance id {id} twice"
            );
        }
        for (stage_name, var) in [
            ("push", "STRIKEFLOW_PUSH__LISTEN"),
            ("api", "STRIKEFLOW_API__LISTEN"),
        ] {
            if stage == stage_name {
                let listen = env.get(var).unwrap_or_else(|| panic!("{name}: {var}"));
                assert!(listen.starts_with("0.0.0.0:"), "{name}: {var}={listen}");
            }
        }
        stages.entry(stage).or_default().push(name.clone());
    }
    let count = |stage: &str| stages.get(stage).map_or(0, Vec::len);
    assert_eq!(count("migrate"), 1, "{stages:?}");
    assert_eq!(count("ingest"), 1, "{stages:?}");
    assert_eq!(count("process"), 2, "{stages:?}");
    assert_eq!(count("sink"), 1, "{stages:?}");
    assert_eq!(count("push"), 2, "{stages:?}");
    assert_eq!(count("api"), 1, "{stages:?}");
}

#[test]
fn compose_stack_is_whole_pinned_scraped_and_proxied() {
    let compose = Compose::load();
    for needed in [
        "kafka",
        "timescaledb",
        "redis",
        "proxy",
        "prometheus",
        "grafana",
    ] {
        assert!(compose.services.contains_key(needed), "no {needed} service");
    }
    for (name, service) in &compose.services {
        let image = yaml_str(service, &["image"]).unwrap_or_else(|| panic!("{name}: no image"));
        if !image.starts_with("strikeflow:") {
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                tag.chars().any(|c| c.is_ascii_digit()) && !tag.contains("latest"),
                "{name}: image {image} is not pinned to a version"
            );
        }
        for dependency in service
            .get("depends_on")
            .and_then(Yaml::as_mapping)
            .into_iter()
            .flat_map(|m| m.keys())
            .chain(
                service
                    .get("depends_on")
                    .and_then(Yaml::as_sequence)
                    .into_iter()
                    .flatten(),
            )
        {
            let dependency = scalar(dependency);
            assert!(
                compose.services.contains_key(&dependency),
                "{name} depends on {dependency}"
            );
        }
        // Bind mounts point at files of this repository.
        for volume in strings(service.get("volumes")) {
            let source = volume.split(':').next().unwrap_or_default();
            if source.starts_with('.') {
                let path = root().join("deploy/compose").join(source);
                assert!(
                    path.exists(),
                    "{name} mounts {source}, which does not exist"
                );
            }
        }
    }

    // Prometheus scrapes every long-running stage on its metrics port.
    let prometheus = yaml_documents("deploy/compose/prometheus.yml").remove(0);
    let targets: BTreeSet<String> = prometheus
        .get("scrape_configs")
        .and_then(Yaml::as_sequence)
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| {
            job.get("static_configs")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
                .flat_map(|c| strings(c.get("targets")))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        strings(prometheus.get("rule_files"))
            .iter()
            .any(|f| f.ends_with("alerts.yml")),
        "Prometheus loads the alert rules"
    );
    let mut push_nodes = BTreeSet::new();
    for (name, service) in compose.strikeflow() {
        let command = Compose::command(service);
        if command.first().map(String::as_str) == Some("migrate") {
            continue;
        }
        let env = Compose::env(service);
        let metrics = env
            .get("STRIKEFLOW_TELEMETRY__METRICS_LISTEN")
            .unwrap_or_else(|| panic!("{name}: metrics listener"));
        let target = format!("{name}:{}", port_of(metrics));
        assert!(
            targets.contains(&target),
            "Prometheus does not scrape {target}"
        );
        if command.first().map(String::as_str) == Some("push") {
            push_nodes.insert(format!(
                "{name}:{}",
                port_of(&env["STRIKEFLOW_PUSH__LISTEN"])
            ));
        }
    }

    // The proxy balances over exactly the push nodes.
    let nginx = read("deploy/compose/nginx.conf");
    let block = nginx
        .split_once("upstream push {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(block, _)| block)
        .expect("an `upstream push` block in nginx.conf");
    let upstream: BTreeSet<String> = block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .filter_map(|l| l.split_whitespace().next())
        .map(|s| s.trim_end_matches(';').to_owned())
        .collect();
    assert_eq!(upstream, push_nodes, "nginx upstream vs push services");
    assert!(
        nginx.contains("proxy_set_header Upgrade"),
        "WebSocket upgrades"
    );
}

/// The Dockerfile's instructions, continuation lines joined and comments left out.
fn dockerfile_instructions() -> Vec<String> {
    let mut instructions = Vec::new();
    let mut logical = String::new();
    for line in read("deploy/Dockerfile").lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        logical.push_str(line.trim_end_matches('\\'));
        if !line.ends_with('\\') {
            instructions.push(std::mem::take(&mut logical).trim().to_owned());
        }
    }
    instructions
}

/// The STRIKEFLOW_ variables the image sets (`ENV`): every container starts with them,
/// under what compose or Kubernetes sets.
fn image_env() -> BTreeMap<String, String> {
    dockerfile_instructions()
        .iter()
        .filter_map(|i| i.strip_prefix("ENV "))
        .flat_map(|vars| {
            vars.split_whitespace()
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("ENV key=value");
                    (k.to_owned(), v.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .filter(|(k, _)| k.starts_with("STRIKEFLOW_"))
        .collect()
}

#[test]
fn the_image_is_pinned_non_root_healthchecked_and_its_settings_exist() {
    let instructions = dockerfile_instructions();
    for from in instructions.iter().filter_map(|i| i.strip_prefix("FROM ")) {
        let image = from.split_whitespace().next().unwrap_or_default();
        assert!(
            image.contains(':') && !image.contains("latest"),
            "base image {image} is not pinned"
        );
    }
    let last_user = instructions
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "));
    assert_eq!(last_user, Some("strikeflow"), "the image runs as non-root");
    let healthcheck = instructions
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK "))
        .expect("the image has a HEALTHCHECK");
    let mut env = image_env();
    let metrics = env
        .get("STRIKEFLOW_TELEMETRY__METRICS_LISTEN")
        .expect("the image's metrics listener");
    assert!(metrics.starts_with("0.0.0.0:"), "metrics on all interfaces");
    assert!(
        healthcheck.contains(&format!("/dev/tcp/127.0.0.1/{}", port_of(metrics)))
            && healthcheck.contains("GET /health "),
        "the HEALTHCHECK asks the metrics listener's /health: {healthcheck}"
    );
    env.insert("STRIKEFLOW_JWT_SECRET".into(), TEST_SECRET.into());
    settings_accepted(&env).unwrap_or_else(|e| panic!("the image's ENV is refused:\n{e}"));
}

// ---------------------------------------------------------------------------------------
// Observability
// ---------------------------------------------------------------------------------------

/// Metric names of the tables of a Markdown section (first column, in backticks).
fn table_metrics(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// The section of `markdown` under the heading `heading`, up to the next heading of the
/// same level.
fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let start = markdown
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let body = &markdown[start + heading.len() + 2..];
    let level = heading.split(' ').next().unwrap_or("##");
    let end = body.find(&format!("\n{level} ")).unwrap_or(body.len());
    &body[..end]
}

/// Every metric the project documents: docs/metrics.md, plus the ones from outside the
/// binary that docs/operations.md lists.
fn documented_metrics() -> BTreeSet<String> {
    let mut names = table_metrics(&read("docs/metrics.md"));
    assert!(
        names.len() > 50,
        "docs/metrics.md parsed to {} names",
        names.len()
    );
    let operations = read("docs/operations.md");
    names.extend(table_metrics(section(
        &operations,
        "## Metrics from outside strikeflow",
    )));
    names
}

/// A name as documented: a histogram's (or summary's) series carry suffixes.
fn undocumented(names: &BTreeSet<String>, documented: &BTreeSet<String>) -> Vec<String> {
    names
        .iter()
        .filter(|name| {
            !documented.contains(*name)
                && !["_bucket", "_sum", "_count"].iter().any(|suffix| {
                    name.strip_suffix(suffix)
                        .is_some_and(|base| documented.contains(base))
                })
        })
        .cloned()
        .collect()
}

fn run_promcheck(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(promcheck());
    command
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("running promcheck");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default())
        .expect("writing to promcheck");
    drop(input);
    child.wait_with_output().expect("promcheck output")
}

#[test]
fn alert_rules_pass_prometheus_rule_checks_and_use_documented_metrics() {
    let output = run_promcheck(&["rules", "deploy/prometheus/alerts.yml"], None);
    assert!(
        output.status.success(),
        "deploy/prometheus/alerts.yml: {}",
        describe(&output)
    );
    let rules: Vec<Json> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("promcheck output"))
        .collect();
    let alerts: BTreeSet<String> = rules
        .iter()
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect();
    let names: BTreeSet<String> = rules
        .iter()
        .flat_map(|r| r["metrics"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let missing = undocumented(&names, &documented_metrics());
    assert!(
        missing.is_empty(),
        "alert rules use undocumented metrics: {missing:?}"
    );

    // What the issue asks the rules to catch, by the metric each one watches.
    for (what, metric) in [
        ("lag growing", "kafka_consumergroup_lag"),
        ("watermark stalled", "processor_watermark_seconds"),
        ("sink commit stale", "sink_ticks_total"),
        ("dead letters", "dead_letters_total"),
        ("slow-client closes", "push_slow_client_closes_total"),
        ("auth failures", "push_auth_failures_total"),
        ("stage down", "up"),
        ("stage degraded", "push_redis_fallbacks_total"),
        ("sink disconnected", "sink_postgres_connected"),
    ] {
        assert!(names.contains(metric), "no rule for {what} ({metric})");
    }
    // Each alert has its runbook entry.
    let operations = read("docs/operations.md");
    for alert in &alerts {
        assert!(
            operations.contains(&format!("### {alert}")),
            "docs/operations.md has no section `### {alert}`"
        );
    }

    // The checker refuses a broken rule file (so its success above means something).
    let bad = std::env::temp_dir().join(format!(
        "strikeflow-deploy-rules-{}.yml",
        std::process::id()
    ));
    std::fs::write(
        &bad,
        "groups:\n  - name: bad\n    rules:\n      - alert: Broken\n        expr: rate(x[5m]\n        for: soon\n",
    )
    .expect("writing a bad rule file");
    let refused = run_promcheck(&["rules", bad.to_str().expect("utf-8")], None);
    let _ = std::fs::remove_file(&bad);
    assert!(
        !refused.status.success(),
        "a broken rule file passed: {}",
        describe(&refused)
    );
}

#[test]
fn dashboards_parse_as_promql_and_use_documented_metrics() {
    let dir = root().join("deploy/grafana/dashboards");
    let mut uids = BTreeSet::new();
    let mut expressions = Vec::new();
    let mut per_dashboard: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/grafana/dashboards") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        let dashboard: Json = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let uid = dashboard["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(uids.insert(uid.to_owned()), "uid {uid} twice");
        assert_eq!(format!("{uid}.json"), file, "file named after its uid");
        for panel in dashboard["panels"].as_array().expect("panels") {
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "prometheus",
                "{file}: panel {} uses the provisioned datasource",
                panel["title"]
            );
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                // Grafana's interval variables, as Grafana would substitute them.
                let expr = ["$__rate_interval", "$__interval", "$__range"]
                    .iter()
                    .fold(expr.to_owned(), |e, var| e.replace(var, "5m"));
                assert!(!expr.contains('$'), "{file}: unknown variable in {expr}");
                expressions.push(expr.clone());
                per_dashboard.entry(uid.to_owned()).or_default().push(expr);
            }
        }
    }
    let datasources = yaml_documents("deploy/grafana/provisioning/datasources/prometheus.yml");
    let provisioned = datasources[0]
        .get("datasources")
        .and_then(Yaml::as_sequence)
        .expect("datasources");
    assert!(provisioned
        .iter()
        .any(|d| yaml_str(d, &["uid"]) == Some("prometheus")));
    // Grafana loads the dashboards from where compose mounts this directory.
    let providers = yaml_documents("deploy/grafana/provisioning/dashboards/strikeflow.yml");
    let path = yaml_at(&providers[0], &["providers"])
        .and_then(Yaml::as_sequence)
        .and_then(|p| p.first())
        .and_then(|p| yaml_str(p, &["options", "path"]))
        .expect("a dashboard provider's path");
    let grafana = &Compose::load().services["grafana"];
    assert!(
        strings(grafana.get("volumes")).contains(&format!("../grafana/dashboards:{path}:ro")),
        "compose mounts deploy/grafana/dashboards at {path}"
    );

    let input = serde_json::to_vec(&expressions).expect("json");
    let output = run_promcheck(&["exprs"], Some(&input));
    let results: Vec<Json> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("promcheck exprs: {e}: {}", describe(&output)));
    let errors: Vec<&Json> = results
        .iter()
        .filter(|r| r.get("error").is_some())
        .collect();
    assert!(
        errors.is_empty(),
        "queries that are not PromQL: {errors:#?}"
    );
    assert!(output.status.success(), "{}", describe(&output));
    let names: BTreeSet<String> = results
        .iter()
        .flat_map(|r| r["metrics"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let missing = undocumented(&names, &documented_metrics());
    assert!(
        missing.is_empty(),
        "dashboards use undocumented metrics: {missing:?}"
    );

    // The overview shows what the issue lists; every stage has a dashboard of its own.
    let overview = per_dashboard
        .get("strikeflow-overview")
        .expect("the overview dashboard");
    for metric in [
        "ingest_ticks_total",
        "processor_ticks_total",
        "processor_bars_total",
        "kafka_consumergroup_lag",
        "processor_watermark_seconds",
        "processor_commit_seconds",
        "sink_ticks_total",
        "push_clients",
        "push_deliveries_total",
        "push_slow_client_closes_total",
        "push_auth_failures_total",
    ] {
        assert!(
            overview.iter().any(|e| e.contains(metric)),
            "the overview does not show {metric}"
        );
    }
    for stage in ["ingest", "processor", "sink", "push", "api"] {
        assert!(
            uids.contains(&format!("strikeflow-{stage}")),
            "no dashboard for {stage}"
        );
    }
}
