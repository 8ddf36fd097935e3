//! The Java client `.properties` file the seeds pass as `--config-file` (`bootstrap.servers`,
//! `security.protocol`, `sasl.mechanism`, `sasl.jaas.config`, `ssl.truststore.*`,
//! `ssl.keystore.*`) turned into `ClientSettings`. Pure text handling; other keys are ignored.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::settings::{SaslLogin, StoreFile, TlsFiles};
use super::{ClientSettings, KafkaError};
use crate::config::{KafkaProtocol, SaslMechanism, Secret};

/// Parses Java `.properties` text: `key=value`, `key: value` or `key value`; `#`/`!`
/// comments; a trailing `\` continues a line; `\t \n \r \f \\ \uXXXX` escapes.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for line in text.lines() {
        let line = line.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let (key, value) = split_entry(&logical);
        out.insert(unescape(key), unescape(value));
        logical.clear();
    }
    if !logical.is_empty() {
        let (key, value) = split_entry(&logical);
        out.insert(unescape(key), unescape(value));
    }
    out
}

/// The key ends at the first unescaped `=`, `:` or whitespace; the separator and the blanks
/// around it are skipped.
fn split_entry(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' | '\x0c' => {
                let rest = line[i..].trim_start_matches([' ', '\t', '\x0c']);
                let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
                return (&line[..i], rest.trim_start_matches([' ', '\t', '\x0c']));
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A JAAS line: `<LoginModule class> required username="u" password="p";`.
struct Jaas {
    module: String,
    options: BTreeMap<String, String>,
}

fn parse_jaas(text: &str) -> Result<Jaas, String> {
    let text = text.trim().trim_end_matches(';').trim();
    let (module, rest) = text.split_once(char::is_whitespace).ok_or(
        "sasl.jaas.config: expected `<LoginModule> required username=\"...\" password=\"...\";`",
    )?;
    let rest = rest.trim_start();
    let rest = ["required", "requisite", "sufficient", "optional"]
        .iter()
        .find_map(|flag| rest.strip_prefix(flag))
        .ok_or("sasl.jaas.config: the login module must be followed by `required`")?;
    let mut options = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.trim().is_empty() {
            break;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    other => value.push(other),
                }
            }
            value
        } else {
            chars.by_ref().take_while(|c| !c.is_whitespace()).collect()
        };
        options.insert(key.trim().to_owned(), value);
    }
    Ok(Jaas {
        module: module.to_owned(),
        options,
    })
}

fn setting_error(message: impl Into<String>) -> KafkaError {
    KafkaError::Settings(message.into())
}

/// The client settings of a `.properties` file (`dir` resolves relative store paths);
/// `fallback_brokers` when it has no `bootstrap.servers`.
pub fn settings(
    props: &BTreeMap<String, String>,
    dir: &Path,
    fallback_brokers: &[String],
    timeout: Duration,
) -> Result<ClientSettings, KafkaError> {
    let brokers: Vec<String> = match props.get("bootstrap.servers") {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => fallback_brokers.to_vec(),
    };
    if brokers.is_empty() {
        return Err(setting_error(
            "no bootstrap.servers in the properties file and no kafka.brokers in the config",
        ));
    }
    let protocol = match props.get("security.protocol").map(String::as_str) {
        None | Some("PLAINTEXT") => KafkaProtocol::Plaintext,
        Some("SSL") => KafkaProtocol::Ssl,
        Some("SASL_PLAINTEXT") => KafkaProtocol::SaslPlaintext,
        Some("SASL_SSL") => KafkaProtocol::SaslSsl,
        Some(other) => {
            return Err(setting_error(format!(
                "security.protocol {other:?}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )))
        }
    };
    let sasl = if protocol.uses_sasl() {
        Some(sasl_login(props)?)
    } else {
        None
    };
    let store = |location: &str, password: &str| {
        props.get(location).map(|p| StoreFile {
            path: dir.join(p),
            password: props.get(password).map(|s| Secret::new(s.clone())),
        })
    };
    let tls = TlsFiles {
        trust: store("ssl.truststore.location", "ssl.truststore.password"),
        identity: store("ssl.keystore.location", "ssl.keystore.password"),
        cert_and_key: None,
    };
    Ok(ClientSettings {
        brokers,
        protocol,
        sasl,
        tls,
        timeout,
    })
}

fn sasl_login(props: &BTreeMap<String, String>) -> Result<SaslLogin, KafkaError> {
    let mechanism = match props.get("sasl.mechanism").map(String::as_str) {
        Some("PLAIN") => SaslMechanism::Plain,
        Some("SCRAM-SHA-256") => SaslMechanism::ScramSha256,
        Some("SCRAM-SHA-512") => SaslMechanism::ScramSha512,
        None => {
            return Err(setting_error(
                "sasl.mechanism is required with a SASL protocol (PLAIN, SCRAM-SHA-256 or \
                 SCRAM-SHA-512)",
            ))
        }
        Some(other) => {
            return Err(setting_error(format!(
                "sasl.mechanism {other:?} is not supported: use PLAIN, SCRAM-SHA-256 or \
                 SCRAM-SHA-512"
            )))
        }
    };
    let jaas = props
        .get("sasl.jaas.config")
        .ok_or_else(|| setting_error("sasl.jaas.config is required with a SASL protocol"))?;
    let jaas = parse_jaas(jaas).map_err(setting_error)?;
    let expected = match mechanism {
        SaslMechanism::Plain => "PlainLoginModule",
        _ => "ScramLoginModule",
    };
    if !jaas.module.ends_with(expected) {
        return Err(setting_error(format!(
            "sasl.jaas.config names {} but sasl.mechanism needs {expected}",
            jaas.module
        )));
    }
    let option = |name: &str| {
        jaas.options
            .get(name)
            .cloned()
            .ok_or_else(|| setting_error(format!("sasl.jaas.config has no {name}=\"...\"")))
    };
    Ok(SaslLogin {
        mechanism,
        username: option("username")?,
        password: Secret::new(option("password")?),
    })
}

#[cfg(test)]
#[path = "properties_tests.rs"]
mod tests;
