//! Loading: finds the file, parses YAML, stacks the layers (defaults < file < `CARACAL_*` env <
//! `DB_*` env) through figment, then resolves secret files and validates. The only code here
//! that touches the process (environment, working directory) is `load`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Empty, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::error::{from_figment, join_path, ConfigError, Origin};
use super::schema::{self, AUDIT_ALIAS};
use super::{env, resolve, validate, Config};

/// File names looked for in the working directory when no file is named.
const DEFAULT_FILES: &[&str] = &["caracal.yaml", "config.yaml"];

/// Loads the configuration of this process: `explicit` (`--config FILE`), else the file named
/// by `CARACAL_CONFIG`, else `./caracal.yaml`, else `./config.yaml`, else none (defaults);
/// then the environment.
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let mut vars = BTreeMap::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().map(str::to_owned) else {
            continue;
        };
        match value.into_string() {
            Ok(value) => {
                vars.insert(name, value);
            }
            Err(_) if consumed(&name) => {
                return Err(ConfigError::Invalid {
                    key: name.clone(),
                    message: "the environment variable is not valid UTF-8".to_owned(),
                    origin: Some(Origin::Env(name)),
                })
            }
            Err(_) => {}
        }
    }
    load_in(explicit, vars, Path::new("."))
}

/// Like [`load`], with the environment given as a map instead of read from the process.
pub fn load_with_env<I, K, V>(explicit: Option<&Path>, env: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let vars = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    load_in(explicit, vars, Path::new("."))
}

fn consumed(name: &str) -> bool {
    name.starts_with(env::PREFIX) || name.starts_with("DB_") || name.starts_with("REDIS_")
}

/// Loads with `dir` as the directory searched for the default file names.
pub(crate) fn load_in(
    explicit: Option<&Path>,
    vars: BTreeMap<String, String>,
    dir: &Path,
) -> Result<Config, ConfigError> {
    let root = schema::build()?;
    let file = find_file(explicit, &vars, dir);
    let mut layers = Vec::new();
    if let Some(path) = &file {
        layers.push(file_layer(path, &root)?);
    }
    layers.extend(env::layers(&vars, &root)?);

    let figment = layers
        .iter()
        .fold(Figment::new(), |f, layer| f.merge(layer));
    let mut config: Config = figment.extract_lossy().map_err(from_figment)?;
    config.set_loaded_from(file);

    resolve::secrets(&mut config, &layers, &vars)?;
    validate::check(&config).map_err(|p| ConfigError::Invalid {
        origin: origin_of(&layers, &p.key),
        key: p.key,
        message: p.message,
    })?;
    Ok(config)
}

fn find_file(
    explicit: Option<&Path>,
    vars: &BTreeMap<String, String>,
    dir: &Path,
) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    if let Some(path) = vars.get(env::CONFIG_VAR).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    DEFAULT_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Which layer of configuration a value belongs to; a higher tier wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tier {
    /// The YAML file.
    File,
    /// A `CARACAL_*` variable.
    Env,
    /// One of the seeds' `DB_*` / `REDIS_PASSWORD*` variables.
    SeedEnv,
}

/// One source of values: the file, or one environment variable.
pub(crate) struct Layer {
    pub(crate) tier: Tier,
    pub(crate) origin: Origin,
    pub(crate) dict: Dict,
}

impl Layer {
    pub(crate) fn new(tier: Tier, origin: Origin, dict: Dict) -> Self {
        Self { tier, origin, dict }
    }

    /// Whether this layer sets the key at `path` (dotted, list indices ignored).
    pub(crate) fn sets(&self, path: &[&str]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        let mut at = self.dict.get(*first);
        for key in rest {
            at = match at {
                Some(Value::Dict(_, dict)) => dict.get(*key),
                _ => None,
            };
        }
        at.is_some()
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        match &self.origin {
            Origin::File(path) => Metadata::from("config file", Source::File(path.clone())),
            Origin::Env(name) => {
                Metadata::from("environment variable", Source::Custom(name.clone()))
            }
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut map = Map::new();
        map.insert(Profile::Default, self.dict.clone());
        Ok(map)
    }
}

/// The origin of the value at `key` (`a.b[0].c`): the highest layer that sets it, or the
/// deepest parent it sets.
pub(crate) fn origin_of(layers: &[Layer], key: &str) -> Option<Origin> {
    let segments: Vec<&str> = key
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect();
    (1..=segments.len()).rev().find_map(|n| {
        layers
            .iter()
            .rev()
            .find(|l| l.sets(&segments[..n]))
            .map(|l| l.origin.clone())
    })
}

fn file_layer(path: &Path, root: &serde_json::Value) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| yaml_error(path, &e))?;
    let origin = Origin::File(path.to_path_buf());
    let mut at = Vec::new();
    let mut dict = match to_figment(doc, &mut at, &origin)? {
        None => Dict::new(),
        Some(Value::Dict(_, dict)) => dict,
        Some(_) => {
            return Err(ConfigError::Yaml {
                path: path.to_path_buf(),
                line: None,
                column: None,
                message: "the top level must be a mapping of keys".to_owned(),
            })
        }
    };
    schema::check_keys(&Value::from(dict.clone()), root, &mut Vec::new(), &origin)?;
    fold_audit_alias(&mut dict, &origin)?;
    Ok(Layer::new(Tier::File, origin, dict))
}

fn yaml_error(path: &Path, e: &serde_yaml::Error) -> ConfigError {
    let location = e.location();
    let mut message = e.to_string();
    if let Some(loc) = &location {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(cut) = message.find(&suffix) {
            message.truncate(cut);
        }
    }
    ConfigError::Yaml {
        path: path.to_path_buf(),
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        message: super::error::one_line(&message),
    }
}

/// YAML → figment values. A key with an empty (null) value is the same as an absent key.
fn to_figment(
    yaml: serde_yaml::Value,
    at: &mut Vec<String>,
    origin: &Origin,
) -> Result<Option<Value>, ConfigError> {
    use serde_yaml::Value as Y;
    let value = match yaml {
        Y::Null => return Ok(None),
        Y::Bool(b) => Value::from(b),
        Y::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (None, Some(i), _) => Value::from(i),
            (None, None, f) => Value::from(f.unwrap_or(f64::NAN)),
        },
        Y::String(s) => Value::from(s),
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                at.push(i.to_string());
                let v = to_figment(item, at, origin)?;
                out.push(v.unwrap_or(Value::Empty(Tag::Default, Empty::None)));
                at.pop();
            }
            Value::from(out)
        }
        Y::Mapping(mapping) => {
            let mut dict = Dict::new();
            for (k, v) in mapping {
                let Y::String(key) = k else {
                    return Err(invalid(at, "keys must be strings", origin));
                };
                at.push(key.clone());
                if let Some(v) = to_figment(v, at, origin)? {
                    dict.insert(key, v);
                }
                at.pop();
            }
            Value::from(dict)
        }
        Y::Tagged(_) => return Err(invalid(at, "YAML tags (`!tag`) are not supported", origin)),
    };
    Ok(Some(value))
}

fn invalid(at: &[String], message: &str, origin: &Origin) -> ConfigError {
    ConfigError::Invalid {
        key: join_path(at),
        message: message.to_owned(),
        origin: Some(origin.clone()),
    }
}

/// Moves a top-level `auditLogger` block into `consumers.auditLogger`. A key set in both
/// places is an error rather than a silent choice.
fn fold_audit_alias(dict: &mut Dict, origin: &Origin) -> Result<(), ConfigError> {
    let Some(alias) = dict.remove(AUDIT_ALIAS) else {
        return Ok(());
    };
    let consumers = dict
        .entry("consumers".to_owned())
        .or_insert_with(|| Value::from(Dict::new()));
    let Value::Dict(_, consumers) = consumers else {
        return Ok(()); // `consumers` of the wrong type: deserialization reports it.
    };
    let target = consumers
        .entry("auditLogger".to_owned())
        .or_insert_with(|| Value::from(Dict::new()));
    match (target, alias) {
        (Value::Dict(_, target), Value::Dict(_, alias)) => {
            for (key, value) in alias {
                if target.contains_key(&key) {
                    return Err(invalid(
                        &[AUDIT_ALIAS.to_owned(), key.clone()],
                        &format!("also set as consumers.auditLogger.{key}; keep one"),
                        origin,
                    ));
                }
                target.insert(key, value);
            }
            Ok(())
        }
        _ => Err(invalid(
            &[AUDIT_ALIAS.to_owned()],
            "auditLogger and consumers.auditLogger must both be mappings of keys",
            origin,
        )),
    }
}
