//! Proxmox's API schema (`data/pve-api-schema.json`, extracted from the
//! official `apidata.js`) and a validator for the dialect it uses: types
//! string/integer/number/boolean/object/array/null, `optional`, `enum`,
//! `minimum`/`maximum` (sometimes written as strings), `maxLength`, Perl
//! `pattern`s (anchored, as Proxmox anchors them), `additionalProperties`,
//! numbered keys (`ipconfig[n]`), named `format`s and property-string
//! formats (`key=value,...` with `default_key`, `alias` and `keyAlias`).
//!
//! Parameters arrive as text (query or form) and are checked as Proxmox's
//! `PVE::JSONSchema` checks them, with its wording; responses are JSON and
//! are checked against `returns`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::{Map, Value};

/// The schema file, as shipped with the lab.
pub const SCHEMA_JSON: &str = include_str!("../../data/pve-api-schema.json");

/// One path of the API with its methods.
#[derive(Debug)]
pub struct Route {
    /// `/nodes/{node}/qemu/{vmid}/clone`.
    pub template: String,
    regex: Regex,
    names: Vec<String>,
    /// Method -> its definition (`parameters`, `returns`...).
    pub methods: BTreeMap<String, Value>,
}

/// The loaded schema.
#[derive(Debug)]
pub struct Schema {
    /// Every path.
    pub routes: Vec<Route>,
}

/// Why a request has no handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No such path.
    NotFound,
    /// The path exists without this method.
    Method,
}

/// The schema, loaded once.
pub fn schema() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| {
        let v: Value = serde_json::from_str(SCHEMA_JSON).expect("data/pve-api-schema.json parses");
        let mut routes = Vec::new();
        for (template, methods) in v["paths"].as_object().expect("paths") {
            let mut names = Vec::new();
            let mut re = String::from("^");
            for seg in template.split('/').filter(|s| !s.is_empty()) {
                re.push('/');
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    names.push(name.to_string());
                    re.push_str("([^/]+)");
                } else {
                    re.push_str(&regex::escape(seg));
                }
            }
            re.push('$');
            routes.push(Route {
                template: template.clone(),
                regex: Regex::new(&re).expect("route regex"),
                names,
                methods: methods
                    .as_object()
                    .expect("methods")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            });
        }
        Schema { routes }
    })
}

impl Schema {
    /// The route for `path` (after `/api2/json`), its definition for
    /// `method`, and the path's parameters (percent-decoded).
    pub fn route(
        &self,
        method: &str,
        path: &str,
    ) -> Result<(&Route, &Value, BTreeMap<String, String>), RouteError> {
        for r in &self.routes {
            if let Some(c) = r.regex.captures(path) {
                let def = r.methods.get(method).ok_or(RouteError::Method)?;
                let params = r
                    .names
                    .iter()
                    .zip(c.iter().skip(1))
                    .map(|(n, m)| {
                        let raw = m.map(|m| m.as_str()).unwrap_or_default();
                        (
                            n.clone(),
                            percent_encoding::percent_decode_str(raw)
                                .decode_utf8_lossy()
                                .to_string(),
                        )
                    })
                    .collect();
                return Ok((r, def, params));
            }
        }
        Err(RouteError::NotFound)
    }

    /// Every (method, path template).
    pub fn endpoints(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for r in &self.routes {
            for m in r.methods.keys() {
                out.push((m.clone(), r.template.clone()));
            }
        }
        out
    }
}

/// Perl regex -> Rust regex, anchored as Proxmox anchors `pattern`s.
fn compile(pattern: &str) -> Regex {
    static CACHE: OnceLock<Mutex<BTreeMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = c.get(pattern) {
        return r.clone();
    }
    let translated = pattern
        .replace("(?^:", "(?:")
        .replace("(?>", "(?:")
        .replace("{,", "{0,");
    let r = Regex::new(&format!("^(?:{translated})$"))
        .unwrap_or_else(|e| panic!("schema pattern {pattern:?} does not translate: {e}"));
    c.insert(pattern.to_string(), r.clone());
    r
}

fn re(pattern: &str) -> Regex {
    compile(pattern)
}

/// Highest index of a numbered key (`net[n]` -> net0..net31).
fn max_index(base: &str) -> u32 {
    match base {
        "ide" => 3,
        "sata" => 5,
        "scsi" => 30,
        "virtio" => 15,
        "hostpci" => 15,
        "usb" => 13,
        "serial" => 3,
        "parallel" => 2,
        "numa" => 7,
        "virtiofs" => 9,
        "unused" => 255,
        "ipconfig" | "net" => 31,
        _ => 31,
    }
}

/// The schema of property `key` in `props`, resolving numbered keys.
pub fn prop<'a>(props: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if let Some(p) = props.get(key) {
        return Some(p);
    }
    let base = key.trim_end_matches(|c: char| c.is_ascii_digit());
    let idx = &key[base.len()..];
    if base.is_empty() || idx.is_empty() || (idx.len() > 1 && idx.starts_with('0')) {
        return None;
    }
    let n: u32 = idx.parse().ok()?;
    if n > max_index(base) {
        return None;
    }
    props.get(&format!("{base}[n]"))
}

fn bound(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn fmt_bound(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

/// Check a parameter given as text against its schema; Proxmox's wording.
pub fn check_text(s: &Value, value: &str) -> Result<(), String> {
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("string");
    let number = match ty {
        "integer" => {
            if !re(r"-?\d+").is_match(value) {
                return Err(format!("type check ('integer') failed - got '{value}'"));
            }
            value.parse::<f64>().ok()
        }
        "number" => {
            if !re(r"[+-]?(\d+|\d+\.\d+|\.\d+)([eE][+-]?\d+)?").is_match(value) {
                return Err(format!("type check ('number') failed - got '{value}'"));
            }
            value.parse::<f64>().ok()
        }
        "boolean" => {
            if !re(r"(?i:1|0|true|false|yes|no|on|off)").is_match(value) {
                return Err(format!("type check ('boolean') failed - got '{value}'"));
            }
            None
        }
        _ => None,
    };
    if let Some(n) = number {
        if let Some(min) = s.get("minimum").and_then(bound)
            && n < min
        {
            return Err(format!(
                "value must have a minimum value of {}",
                fmt_bound(min)
            ));
        }
        if let Some(max) = s.get("maximum").and_then(bound)
            && n > max
        {
            return Err(format!(
                "value must have a maximum value of {}",
                fmt_bound(max)
            ));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        let names: Vec<&str> = e.iter().filter_map(Value::as_str).collect();
        if !names.contains(&value) {
            return Err(format!(
                "value '{value}' does not have a value in the enumeration '{}'",
                names.join(", ")
            ));
        }
    }
    if let Some(max) = s.get("maxLength").and_then(bound)
        && value.chars().count() as f64 > max
    {
        return Err(format!(
            "value may only be {} characters long",
            fmt_bound(max)
        ));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str)
        && !compile(p).is_match(value)
    {
        return Err("value does not match the regex pattern".to_string());
    }
    match s.get("format") {
        Some(Value::String(f)) => {
            check_format(f, value).map_err(|e| format!("invalid format - {e}"))
        }
        Some(Value::Object(f)) => {
            check_property_string(f, value).map_err(|e| format!("invalid format - {e}"))
        }
        _ => Ok(()),
    }
}

fn is_ipv4_cidr(v: &str) -> bool {
    v.split_once('/').is_some_and(|(a, p)| {
        a.parse::<Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32)
    })
}

fn is_ipv6_cidr(v: &str) -> bool {
    v.split_once('/').is_some_and(|(a, p)| {
        a.parse::<Ipv6Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 128)
    })
}

/// Named formats. Those a hypervisor backend sends are checked as Proxmox
/// checks them; the rest (PCI maps, boot orders...) only need to be text.
pub fn check_format(format: &str, v: &str) -> Result<(), String> {
    let ok = |b: bool, what: &str| {
        if b {
            Ok(())
        } else {
            Err(format!("value does not look like a valid {what}"))
        }
    };
    match format {
        "pve-node" => ok(re(r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?").is_match(v), "node name"),
        "pve-vmid" => ok(re(r"[1-9][0-9]{2,8}").is_match(v), "VM ID"),
        "dns-name" => ok(
            re(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?))*")
                .is_match(v),
            "DNS name",
        ),
        "pve-configid" => ok(re(r"(?i)[a-z][a-z0-9_-]+").is_match(v), "configuration ID"),
        "pve-configid-list" => {
            for id in v.split([',', ';', ' ', '\0']).filter(|s| !s.is_empty()) {
                check_format("pve-configid", id)?;
            }
            Ok(())
        }
        // pve-ha-manager's PVE::HA::Config: `vm:ID`/`ct:ID`, or a bare VM id
        // where a VM id may stand for `vm:ID`.
        "pve-ha-resource-or-vm-id" => ok(
            re(r"[1-9][0-9]{2,8}|[a-z]+:[^\s,;]+").is_match(v),
            "ha resource id",
        ),
        "pve-ha-resource-id" => ok(re(r"[a-z]+:[^\s,;]+").is_match(v), "ha resource id"),
        "pve-ha-resource-id-list" => {
            for id in v.split([',', ';', ' ', '\0']).filter(|s| !s.is_empty()) {
                check_format("pve-ha-resource-id", id)?;
            }
            Ok(())
        }
        "pve-ha-node-list" => {
            for n in v.split([',', ';', ' ', '\0']).filter(|s| !s.is_empty()) {
                let (node, prio) = n.split_once(':').unwrap_or((n, "0"));
                check_format("pve-node", node)?;
                if prio.parse::<u32>().is_err() {
                    return Err(format!("value '{n}' does not look like a valid node priority"));
                }
            }
            Ok(())
        }
        "pve-storage-id" => ok(re(r"(?i)[a-z][a-z0-9\-_.]*[a-z0-9]").is_match(v), "storage ID"),
        "pve-poolid" => ok(re(r"[A-Za-z0-9_\-]+").is_match(v), "pool ID"),
        "pve-bridge-id" => ok(re(r"[-_.\w\d]+").is_match(v), "bridge name"),
        "mac-addr" => ok(
            re(r"(?i)[a-f0-9][02468ace](?::[a-f0-9]{2}){5}").is_match(v),
            "unicast MAC address",
        ),
        "urlencoded" => {
            if re(r"[%a-zA-Z0-9\-_.!~*'()]*").is_match(v) {
                Ok(())
            } else {
                Err(format!("invalid urlencoded string: {v}"))
            }
        }
        "address-list" => {
            for a in v.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                if a.parse::<IpAddr>().is_err() {
                    return Err(format!("value '{a}' does not look like a valid address"));
                }
            }
            Ok(())
        }
        "CIDR" => ok(is_ipv4_cidr(v) || is_ipv6_cidr(v), "IP address with prefix"),
        "disk-size" => ok(re(r"\d+(\.\d+)?[KMGT]?").is_match(v), "disk size"),
        "pve-qm-ipconfig" => {
            let mut seen = BTreeMap::new();
            for part in v.split(',').filter(|s| !s.is_empty()) {
                let (k, val) = part
                    .split_once('=')
                    .ok_or_else(|| format!("value without key, but schema does not define a default key: {part}"))?;
                if seen.insert(k, val).is_some() {
                    return Err(format!("duplicate key in comma-separated list property: {k}"));
                }
                let good = match k {
                    "ip" => val == "dhcp" || is_ipv4_cidr(val),
                    "gw" => val.parse::<Ipv4Addr>().is_ok(),
                    "ip6" => matches!(val, "dhcp" | "auto") || is_ipv6_cidr(val),
                    "gw6" => val.parse::<Ipv6Addr>().is_ok(),
                    _ => return Err(format!("invalid key in comma-separated list property: {k}")),
                };
                if !good {
                    return Err(format!("{k}: value does not look like a valid {k} setting"));
                }
            }
            if seen.contains_key("gw") && seen.get("ip").is_none_or(|ip| *ip == "dhcp") {
                return Err("gateway specified without specifying an IP address".into());
            }
            Ok(())
        }
        "pve-volume-id" => ok(re(r"(?i)[a-z][a-z0-9\-_.]*[a-z0-9]:.+").is_match(v), "volume ID"),
        "pve-volume-id-or-qm-path" | "pve-volume-id-or-absolute-path" => ok(
            v == "none"
                || v == "cdrom"
                || v.starts_with('/')
                || re(r"(?i)[a-z][a-z0-9\-_.]*[a-z0-9]:.+").is_match(v),
            "volume ID or path",
        ),
        "pve-tag-list" => ok(
            v.split([';', ',', ' '])
                .filter(|s| !s.is_empty())
                .all(|t| re(r"[a-z0-9_][a-z0-9_\-+.]*").is_match(t)),
            "tag list",
        ),
        _ => Ok(()),
    }
}

/// A property string (`key=value,...`) against its object format.
pub fn check_property_string(f: &Map<String, Value>, v: &str) -> Result<(), String> {
    let default_key = f
        .iter()
        .find(|(_, s)| s.get("default_key").and_then(bound) == Some(1.0))
        .map(|(k, _)| k.clone());
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for part in v.split(',').filter(|s| !s.is_empty()) {
        let (mut k, val) = match part.split_once('=') {
            Some((k, val)) => (k.to_string(), val.to_string()),
            None => match &default_key {
                Some(d) if !seen.contains_key(d) => (d.clone(), part.to_string()),
                _ => {
                    return Err(format!(
                        "value without key, but schema does not define a default key: {part}"
                    ));
                }
            },
        };
        let Some(mut s) = f.get(&k) else {
            return Err(format!("invalid key in comma-separated list property: {k}"));
        };
        if let Some(alias) = s.get("alias").and_then(Value::as_str) {
            if let Some(key_alias) = s.get("keyAlias").and_then(Value::as_str) {
                if seen.insert(key_alias.to_string(), k.clone()).is_some() {
                    return Err(format!(
                        "duplicate key in comma-separated list property: {key_alias}"
                    ));
                }
            }
            k = alias.to_string();
            s = f
                .get(&k)
                .ok_or_else(|| format!("invalid key in comma-separated list property: {k}"))?;
        }
        if seen.insert(k.clone(), val.clone()).is_some() {
            return Err(format!(
                "duplicate key in comma-separated list property: {k}"
            ));
        }
        check_text(s, &val).map_err(|e| format!("{k}: {e}"))?;
    }
    for (k, s) in f {
        let optional = s.get("optional").and_then(bound) == Some(1.0) || s.get("alias").is_some();
        if !optional && !seen.contains_key(k) {
            return Err(format!("{k}: property is missing and it is not optional"));
        }
    }
    Ok(())
}

/// Check request parameters (text) against a method's `parameters`; the
/// `errors` map Proxmox would answer with.
pub fn check_params(
    def: &Value,
    params: &BTreeMap<String, String>,
) -> Result<(), BTreeMap<String, String>> {
    let empty = Map::new();
    let ps = &def["parameters"];
    let props = ps
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let additional = ps.get("additionalProperties").and_then(bound) != Some(0.0);
    let mut errors = BTreeMap::new();
    for (k, v) in params {
        match prop(props, k) {
            None if !additional => {
                errors.insert(
                    k.clone(),
                    "property is not defined in schema and the schema does not allow additional properties".into(),
                );
            }
            None => {}
            Some(s) => {
                if let Err(e) = check_text(s, v) {
                    errors.insert(k.clone(), e);
                }
            }
        }
    }
    for (k, s) in props {
        if k.ends_with("[n]") {
            continue;
        }
        let optional = s.get("optional").and_then(bound) == Some(1.0);
        if !optional && !params.contains_key(k) {
            errors.insert(
                k.clone(),
                "property is missing and it is not optional".into(),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Check a JSON value against a `returns` schema; every problem with its
/// JSON path. Objects with `properties` are strict unless
/// `additionalProperties` is 1.
pub fn check_value(s: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    if s.get("optional").and_then(bound) == Some(1.0) && v.is_null() {
        return;
    }
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("any");
    let type_ok = match ty {
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean() || v.as_u64().is_some_and(|n| n <= 1),
        "string" => v.is_string(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    };
    if !type_ok {
        out.push(format!("{path}: expected {ty}, got {v}"));
        return;
    }
    match v {
        Value::String(text) => {
            if let Err(e) = check_text(s, text) {
                out.push(format!("{path}: {e}"));
            }
        }
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                if let Some(min) = s.get("minimum").and_then(bound)
                    && f < min
                {
                    out.push(format!("{path}: {f} < minimum {min}"));
                }
                if let Some(max) = s.get("maximum").and_then(bound)
                    && f > max
                {
                    out.push(format!("{path}: {f} > maximum {max}"));
                }
            }
        }
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                let additional = s.get("additionalProperties").and_then(bound) == Some(1.0);
                for (k, val) in m {
                    match prop(props, k) {
                        Some(ps) => check_value(ps, val, &format!("{path}.{k}"), out),
                        None if !additional => {
                            out.push(format!("{path}.{k}: not in the schema"));
                        }
                        None => {}
                    }
                }
                for (k, ps) in props {
                    let optional = ps.get("optional").and_then(bound) == Some(1.0);
                    if !optional && !k.ends_with("[n]") && !m.contains_key(k) {
                        out.push(format!("{path}.{k}: missing (not optional)"));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_value(is, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clone_def() -> &'static Value {
        schema()
            .route("POST", "/nodes/pve1/qemu/9000/clone")
            .unwrap()
            .1
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_pattern_translates() {
        fn walk(v: &Value) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(p)) = m.get("pattern") {
                        compile(p);
                    }
                    m.values().for_each(walk);
                }
                Value::Array(a) => a.iter().for_each(walk),
                _ => {}
            }
        }
        walk(&serde_json::from_str(SCHEMA_JSON).unwrap());
    }

    #[test]
    fn clone_parameters() {
        let def = clone_def();
        let ok = params(&[
            ("node", "pve1"),
            ("vmid", "9000"),
            ("newid", "105"),
            ("full", "1"),
            ("name", "master-2"),
        ]);
        assert_eq!(check_params(def, &ok), Ok(()));
        let bad = params(&[
            ("node", "pve1"),
            ("vmid", "9000"),
            ("newid", "99"),
            ("full", "maybe"),
            ("name", "bad_name"),
            ("cores", "2"),
        ]);
        let e = check_params(def, &bad).unwrap_err();
        assert_eq!(e["newid"], "value must have a minimum value of 100");
        assert_eq!(e["full"], "type check ('boolean') failed - got 'maybe'");
        assert!(e["name"].contains("DNS name"), "{e:?}");
        assert!(e["cores"].contains("does not allow additional properties"));
        let missing = params(&[("node", "pve1"), ("vmid", "9000")]);
        assert_eq!(
            check_params(def, &missing).unwrap_err()["newid"],
            "property is missing and it is not optional"
        );
    }

    #[test]
    fn config_parameters() {
        let def = schema()
            .route("PUT", "/nodes/pve1/qemu/105/config")
            .unwrap()
            .1;
        let ok = params(&[
            ("node", "pve1"),
            ("vmid", "105"),
            ("ipconfig0", "ip=198.18.20.105/24,gw=198.18.20.1"),
            ("memory", "8192"),
            ("cores", "4"),
            ("sshkeys", "ssh-ed25519%20AAAA%2B%2F%20me%40host"),
            ("nameserver", "198.18.20.1 198.18.20.2"),
            ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0"),
        ]);
        assert_eq!(check_params(def, &ok), Ok(()));
        let bad = params(&[
            ("node", "pve1"),
            ("vmid", "105"),
            ("ipconfig0", "ip=198.18.20.105,gw=198.18.20.1"),
            ("ipconfig32", "ip=dhcp"),
            ("memory", "8"),
            ("sshkeys", "ssh-ed25519 AAAA me@host"),
            ("net0", "virtio=BC:24:11:00:00:01,speed=10"),
        ]);
        let e = check_params(def, &bad).unwrap_err();
        assert!(e["ipconfig0"].starts_with("invalid format"), "{e:?}");
        assert!(e["ipconfig32"].contains("not defined"), "{e:?}");
        assert!(e["memory"].contains("minimum value of 16"), "{e:?}");
        assert!(e["sshkeys"].contains("invalid urlencoded string"), "{e:?}");
        assert!(e["net0"].contains("invalid key"), "{e:?}");
    }

    #[test]
    fn routes() {
        let s = schema();
        // 28 for VMs, tasks and snapshots; 11 for HA resources, rules and
        // their status (issue 26).
        assert_eq!(s.endpoints().len(), 39);
        let (_, _, p) = s.route("PUT", "/cluster/ha/rules/k8s-masters").unwrap();
        assert_eq!(p["rule"], "k8s-masters");
        assert!(matches!(
            s.route("GET", "/nodes/pve1/nothing"),
            Err(RouteError::NotFound)
        ));
        assert!(matches!(
            s.route("PATCH", "/nodes"),
            Err(RouteError::Method)
        ));
        let (_, _, p) = s
            .route(
                "GET",
                "/nodes/pve1/tasks/UPID%3Apve1%3A1%3A2%3A3%3Aqmstart%3A100%3Aroot%40pam%3A/status",
            )
            .unwrap();
        assert_eq!(p["upid"], "UPID:pve1:1:2:3:qmstart:100:root@pam:");
    }
}
