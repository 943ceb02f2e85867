//! `metadata.managedFields` as structured-merge-diff keeps it: field sets, their FieldsV1
//! encoding, and the ownership bookkeeping of non-apply writes (`Update` entries).

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// How a list is merged by server-side apply (`x-kubernetes-list-type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    Atomic,
    Set,
    /// Associative list keyed by these fields.
    Map(Vec<String>),
}

/// What server-side apply needs to know about a type: list types, and which objects are
/// maps (`map[string]T`, whose keys are recorded as members) rather than structs. Paths look
/// like `.spec.template.spec.containers`, list items written `[]`.
pub(crate) trait TypeInfo {
    fn list_type(&self, path: &str) -> ListType;
    fn is_map(&self, path: &str) -> bool;
}

/// Map-typed fields of the built-in kinds we serve (matched on the last path segment).
const BUILTIN_MAP_FIELDS: &[&str] = &[
    "labels",
    "annotations",
    "matchLabels",
    "nodeSelector",
    "data",
    "stringData",
    "binaryData",
    "limits",
    "requests",
    "capacity",
    "allocatable",
];

/// A plain list-type lookup (the `list_keys` closure of the contract) also works as
/// `TypeInfo`; maps are then recognised by the built-in table (and Service `spec.selector`).
impl<F: Fn(&str) -> ListType + ?Sized> TypeInfo for F {
    fn list_type(&self, path: &str) -> ListType {
        self(path)
    }
    fn is_map(&self, path: &str) -> bool {
        path == ".spec.selector" && self(".spec.ports") != ListType::Atomic
            || path.rsplit('.').next().is_some_and(|last| BUILTIN_MAP_FIELDS.contains(&last))
    }
}

/// A CRD schema as `TypeInfo`: list types from `x-kubernetes-list-type`, maps from
/// `additionalProperties`.
pub(crate) struct SchemaTypes<'a>(pub &'a Value);

impl TypeInfo for SchemaTypes<'_> {
    fn list_type(&self, path: &str) -> ListType {
        crate::cluster::semantics::schema::list_type_at(self.0, path)
    }
    fn is_map(&self, path: &str) -> bool {
        crate::cluster::semantics::schema::is_map_at(self.0, path)
    }
}

/// One path element as FieldsV1 spells it: `f:name`, `k:{"name":"x"}`, `v:"a"`, `i:0`.
pub(crate) type Element = String;
pub(crate) type FieldPath = Vec<Element>;
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// Key fields of a map-list item; a missing `protocol` takes its API default `TCP`, as the
/// apiserver's defaulting would have set it on the live object.
pub(crate) fn item_key(keys: &[String], item: &Value) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| match item.get(k) {
            Some(v) => Some((k.clone(), v.clone())),
            None if k == "protocol" => Some((k.clone(), json!("TCP"))),
            None => None,
        })
        .collect()
}

/// The path element naming `item` in a list of the given type (index `i` for atomic lists).
pub(crate) fn item_element(list: &ListType, item: &Value, i: usize) -> Element {
    match list {
        ListType::Map(keys) => format!("k:{}", Value::Object(item_key(keys, item))),
        ListType::Set => format!("v:{item}"),
        ListType::Atomic => format!("i:{i}"),
    }
}

fn type_path(base: &str, element: &str) -> String {
    match element.strip_prefix("f:") {
        Some(name) => format!("{base}.{name}"),
        None => format!("{base}[]"),
    }
}

/// Fields that the apiserver never tracks (`stripmeta`): type and identity metadata.
fn stripped(path: &[Element]) -> bool {
    const META: &[&str] = &[
        "f:name",
        "f:namespace",
        "f:creationTimestamp",
        "f:selfLink",
        "f:uid",
        "f:generation",
        "f:managedFields",
        "f:resourceVersion",
        "f:deletionTimestamp",
        "f:deletionGracePeriodSeconds",
    ];
    match path {
        [one] => one == "f:apiVersion" || one == "f:kind",
        [m, f] => m == "f:metadata" && META.contains(&f.as_str()),
        _ => false,
    }
}

/// The set of fields a value specifies (structured-merge-diff `ToFieldSet`): leaves, list
/// items, atomic lists, map entries, empty objects. Non-empty structs, maps and non-atomic
/// lists are implied by their members.
pub(crate) fn field_set(value: &Value, types: &dyn TypeInfo) -> FieldSet {
    let mut set = FieldSet::new();
    walk_set(value, &mut Vec::new(), "", types, &mut set);
    set.retain(|p| !stripped(p) && !p.is_empty());
    set
}

fn walk_set(v: &Value, path: &mut FieldPath, tpath: &str, types: &dyn TypeInfo, set: &mut FieldSet) {
    match v {
        Value::Object(map) => {
            // A struct or map is a member only when empty; map entries always are.
            let is_map = types.is_map(tpath);
            if map.is_empty() {
                set.insert(path.clone());
            }
            for (k, child) in map {
                let el = format!("f:{k}");
                let tp = type_path(tpath, &el);
                path.push(el);
                if is_map {
                    set.insert(path.clone());
                }
                walk_set(child, path, &tp, types, set);
                path.pop();
            }
        }
        Value::Array(items) => match types.list_type(tpath) {
            ListType::Atomic => {
                set.insert(path.clone());
            }
            list => {
                for (i, item) in items.iter().enumerate() {
                    path.push(item_element(&list, item, i));
                    set.insert(path.clone());
                    if !matches!(list, ListType::Set) {
                        walk_set(item, path, &format!("{tpath}[]"), types, set);
                    }
                    path.pop();
                }
            }
        },
        _ => {
            set.insert(path.clone());
        }
    }
}

/// Where a path element points inside a container.
enum Slot {
    Key(String),
    Index(usize),
}

fn slot(v: &Value, el: &str) -> Option<Slot> {
    if let Some(name) = el.strip_prefix("f:") {
        return v.get(name).map(|_| Slot::Key(name.to_string()));
    }
    let items = v.as_array()?;
    if let Some(i) = el.strip_prefix("i:") {
        let i: usize = i.parse().ok()?;
        return (i < items.len()).then_some(Slot::Index(i));
    }
    let list = parse_item(el)?;
    items.iter().enumerate().position(|(i, it)| item_element(&list, it, i) == el).map(Slot::Index)
}

fn at<'a>(v: &'a Value, s: &Slot) -> Option<&'a Value> {
    match s {
        Slot::Key(k) => v.get(k),
        Slot::Index(i) => v.get(*i),
    }
}

/// The value at a field path, if present.
pub(crate) fn get<'a>(obj: &'a Value, path: &[Element]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, el| at(cur, &slot(cur, el)?))
}

/// The list type encoded in an item element (`k:` keys, `v:` set value).
fn parse_item(el: &str) -> Option<ListType> {
    if let Some(k) = el.strip_prefix("k:") {
        let key: Value = serde_json::from_str(k).ok()?;
        return Some(ListType::Map(key.as_object()?.keys().cloned().collect()));
    }
    el.starts_with("v:").then_some(ListType::Set)
}

/// Removes the value at `path` (a field, or a list item) from `obj`.
pub(crate) fn remove(obj: &mut Value, path: &[Element]) {
    let Some((first, rest)) = path.split_first() else { return };
    let Some(s) = slot(obj, first) else { return };
    match (rest.is_empty(), s, obj) {
        (true, Slot::Key(k), Value::Object(m)) => {
            m.remove(&k);
        }
        (true, Slot::Index(i), Value::Array(a)) => {
            a.remove(i);
        }
        (false, Slot::Key(k), Value::Object(m)) => remove(m.get_mut(&k).expect("slot exists"), rest),
        (false, Slot::Index(i), Value::Array(a)) => remove(&mut a[i], rest),
        _ => {}
    }
}

/// FieldsV1 JSON of a set: members with children carry `".": {}`.
pub(crate) fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for el in path {
            node = node.entry(el.clone()).or_insert_with(|| json!({})).as_object_mut().expect("object node");
        }
        if !node.is_empty() {
            node.insert(".".into(), json!({}));
        }
    }
    // A member inserted before its children also needs ".".
    fn mark(node: &mut Map<String, Value>, set: &FieldSet, path: &mut FieldPath) {
        for (k, v) in node.iter_mut() {
            if k == "." {
                continue;
            }
            path.push(k.clone());
            let m = v.as_object_mut().expect("object node");
            if set.contains(path) && !m.is_empty() {
                m.insert(".".into(), json!({}));
            }
            mark(m, set, path);
            path.pop();
        }
    }
    mark(&mut root, set, &mut Vec::new());
    Value::Object(root)
}

pub(crate) fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, path: &mut FieldPath, set: &mut FieldSet) {
        for (k, child) in node {
            if k == "." {
                set.insert(path.clone());
                continue;
            }
            path.push(k.clone());
            match child.as_object() {
                Some(m) if !m.is_empty() => walk(m, path, set),
                _ => {
                    set.insert(path.clone());
                }
            }
            path.pop();
        }
    }
    let mut set = FieldSet::new();
    if let Some(m) = v.as_object() {
        walk(m, &mut Vec::new(), &mut set);
    }
    set
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// A decoded managedFields entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

pub(crate) fn read_entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else { return Vec::new() };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            Entry {
                manager: s("manager"),
                operation: if s("operation") == "Apply" { Operation::Apply } else { Operation::Update },
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: s("subresource"),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            }
        })
        .collect()
}

/// Writes entries sorted as the apiserver sorts them (operation, time, manager), dropping
/// empty ones; removes `managedFields` when none is left.
pub(crate) fn write_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        (a.operation, &a.time, &a.manager, &a.api_version, &a.subresource).cmp(&(
            b.operation,
            &b.time,
            &b.manager,
            &b.api_version,
            &b.subresource,
        ))
    });
    let encoded: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation.as_str(), "apiVersion": e.api_version, "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    if encoded.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(encoded));
    }
}

/// Paths whose value differs between two objects: added or changed leaves/items in `new`
/// (`changed`) and paths of `old` absent from `new` (`removed`).
pub(crate) fn diff(old: Option<&Value>, new: &Value, types: &dyn TypeInfo) -> (FieldSet, FieldSet) {
    let new_set = field_set(new, types);
    let old_set = old.map(|o| field_set(o, types)).unwrap_or_default();
    let changed = new_set.iter().filter(|p| !old_set.contains(*p) || leaf_differs(old, new, p)).cloned().collect();
    let removed = old_set.difference(&new_set).cloned().collect();
    (changed, removed)
}

fn leaf_differs(old: Option<&Value>, new: &Value, p: &[Element]) -> bool {
    let a = old.and_then(|o| get(o, p));
    let b = get(new, p);
    // Containers are compared through their members; only scalars and atomic values here.
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => x.is_empty() != y.is_empty(),
        (Some(Value::Array(_)), Some(Value::Array(_))) => a != b && !p.last().is_some_and(|l| l.starts_with("k:")),
        _ => a != b,
    }
}

/// managedFields of `new` after a create/update/patch by `manager` (operation `Update`):
/// the manager gains the fields it changed, other managers lose them, and removed fields
/// leave every set. Returns `new` with `metadata.managedFields` rewritten.
pub(crate) fn update_managed_fields(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    api_version: &str,
    operation: Operation,
    now: &str,
    types: &dyn TypeInfo,
) -> Value {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let mut out = new.clone();
    let (changed, removed) = diff(old, new, types);
    for e in &mut entries {
        e.fields.retain(|p| !removed.contains(p) && !changed.contains(p));
    }
    let mine = entries.iter().position(|e| {
        e.manager == manager && e.operation == operation && e.api_version == api_version && e.subresource.is_empty()
    });
    let idx = mine.unwrap_or_else(|| {
        entries.push(Entry {
            manager: manager.into(),
            operation,
            api_version: api_version.into(),
            time: now.into(),
            subresource: String::new(),
            fields: FieldSet::new(),
        });
        entries.len() - 1
    });
    if !changed.is_empty() {
        entries[idx].time = now.into();
    }
    entries[idx].fields.extend(changed);
    write_entries(&mut out, entries);
    out
}

#[cfg(test)]
mod tests;
