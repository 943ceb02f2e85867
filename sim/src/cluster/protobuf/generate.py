#!/usr/bin/env python3
"""Writes table.rs: the protobuf layout of the built-in kinds the embedded API server serves.

Field numbers and types come from k8s-pb's generated prost code, JSON field names from
k8s-openapi's serde code (prost's snake_case names lose them: `podIP` becomes `pod_ip`).
Run from the workspace root after changing either crate's version:
    python3 sim/src/cluster/protobuf/generate.py && cargo fmt --all
"""
import glob, json, os, re, subprocess, sys

# The apiVersions whose kinds are served (sim/src/cluster/resources.rs, CRDs excluded: they
# have no protobuf encoding).
SERVED = {"v1", "admissionregistration.k8s.io/v1", "apps/v1", "discovery.k8s.io/v1", "events.k8s.io/v1", "rbac.authorization.k8s.io/v1",
          "coordination.k8s.io/v1", "policy/v1", "scheduling.k8s.io/v1"}
OPENAPI_VERSION = "v1_37"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "table.rs")


def crate_dir(name):
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "-q"]))
    for pkg in meta["packages"]:
        if pkg["name"] == name:
            return pkg["version"], os.path.dirname(pkg["manifest_path"])
    sys.exit(f"{name} is not a dependency of the workspace")


def parse_pb(src):
    """module path -> {struct -> [(tag, rust field, prost kind, value type path)]}, and kinds."""
    messages, kinds = {}, []
    for path in glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), src).replace(os.sep, "::")
        text = open(path).read()
        for m in re.finditer(r"impl crate::Resource for (\w+) \{\s*const API_VERSION: &'static str = \"([^\"]+)\";"
                             r"[^}]*?const KIND: &'static str = \"([^\"]+)\";", text):
            kinds.append((m.group(2), m.group(3), f"{module}::{m.group(1)}"))
        for m in re.finditer(r"\npub struct (\w+) \{(.*?)\n\}", text, re.S):
            body = "\n".join(l for l in m.group(2).splitlines() if not l.strip().startswith("///"))
            fields = []
            for f in re.finditer(r"#\[prost\(([^\]]*)\)\]\s*pub (?:r#)?(\w+):\s*([^#]*?),\s*(?=#|$)", body, re.S):
                attr, name, ty = f.group(1), f.group(2), re.sub(r"\s+", "", f.group(3))
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                kind = attr if attr.startswith("btree_map") else attr.split(",")[0].strip()
                is_message = kind == "message" or (kind.startswith("btree_map") and "message" in kind)
                fields.append((tag, name, kind, "repeated" in attr, resolve(module, ty) if is_message else None))
            if len(fields) != body.count("#[prost("):
                sys.exit(f"could not read every field of {module}::{m.group(1)}")
            messages[f"{module}::{m.group(1)}"] = fields
    return messages, kinds


def resolve(module, ty):
    """The absolute k8s-pb path of a field's message (or map value) type, or None."""
    for wrapper in ["::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"]:
        ty = ty.replace(wrapper, "")
    if "BTreeMap<" in ty:
        ty = ty.split(",", 1)[1]
    ty = ty.rstrip(">").rstrip(",")
    parts = module.split("::")
    segs = ty.split("::")
    while segs and segs[0] == "super":
        parts.pop()
        segs.pop(0)
    if segs[0] == "crate":
        parts, segs = [], segs[1:]
    return "::".join(parts + segs)


def json_names(openapi_src, path):
    """Rust field -> JSON name for a k8s-openapi type, from its serde `Field::Key_` arms."""
    module, struct = path.rsplit("::", 1)
    directory = os.path.join(openapi_src, OPENAPI_VERSION, *module.split("::"))
    for file in glob.glob(os.path.join(directory, "*.rs")):
        text = open(file).read()
        if re.search(rf"\npub struct {struct} \{{", text) or re.search(rf"\npub struct {struct}\(", text):
            return dict((rust, js) for js, rust in re.findall(r'"(\w+)" => Field::Key_(\w+)', text))
    return {}


def inline(names, target, messages):
    """Whether the message `target` is embedded inline: its fields are the outer type's, or
    inline in turn (NamedRuleWithOperations embeds RuleWithOperations, which embeds Rule)."""
    fields = messages[target]

    def outer(field):
        _, rust, kind, repeated, sub = field
        return rust in names or (kind == "message" and not repeated and inline(names, sub, messages))

    return bool(names) and bool(fields) and all(outer(f) for f in fields)


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def rust_type(kind, repeated, target):
    if kind.startswith("btree_map"):
        value = re.search(r'btree_map = "string, (\w+)"', kind).group(1)
        return {"string": "Ty::MapOfString", "bytes": "Ty::MapOfBytes"}.get(value, f'Ty::MapOf("{target}")')
    scalar = {"string": "Ty::String", "int32": "Ty::Int32", "int64": "Ty::Int64", "bool": "Ty::Bool",
              "bytes": "Ty::Bytes", "double": "Ty::Double", "message": f'Ty::Message("{target}")'}[kind.split(" ")[0]]
    return scalar


def main():
    pb_version, pb_dir = crate_dir("k8s-pb")
    oa_version, oa_dir = crate_dir("k8s-openapi")
    messages, kinds = parse_pb(os.path.join(pb_dir, "src"))
    kinds = sorted(k for k in kinds if k[0] in SERVED)
    roots = [path for _, _, path in kinds]
    roots += [p + "List" for p in roots if p + "List" in messages]
    roots.append("apimachinery::pkg::apis::meta::v1::Status")
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in messages:
            sys.exit(f"message {name} not found in k8s-pb")
        seen.add(name)
        todo += [target for *_, target in messages[name] if target]
    out = [f"// Generated by generate.py from k8s-pb {pb_version} (field numbers) and k8s-openapi {oa_version}",
           f"// ({OPENAPI_VERSION} JSON names). Do not edit; regenerate after a version change of either crate.",
           "", "use super::schema::{Field, Message, Ty};", "",
           "/// The protobuf message of each served built-in apiVersion and kind.",
           "pub(super) const KINDS: &[(&str, &str, &str)] = &["]
    out += [f'    ("{a}", "{k}", "{p}"),' for a, k, p in kinds]
    out += ["];", "", "/// Every message reachable from `KINDS`, sorted by name.", "pub(super) const MESSAGES: &[Message] = &["]
    names_of = {name: json_names(os.path.join(oa_dir, "src"), name) for name in seen}
    # A type embedded inline may have no k8s-openapi struct of its own (VolumeSource): its
    # fields' JSON names are those of the struct that embeds it.
    for name in seen:
        for _, rust, kind, repeated, target in messages[name]:
            if kind == "message" and not repeated and rust not in names_of[name] and inline(names_of[name], target, messages):
                names_of[target] = {**names_of[name], **names_of[target]}
    for name in sorted(seen):
        names = names_of[name]
        out.append(f'    Message {{ name: "{name}", fields: &[')
        for tag, rust, kind, repeated, target in sorted(messages[name]):
            js = names.get(rust) or names.get(rust.rstrip("_"))
            ty = rust_type(kind, repeated, target)
            if js is None and kind == "message" and not repeated and inline(names, target, messages):
                # A Go struct embedded inline (`json:",inline"`): a field of its own in the
                # proto, its fields at this level in JSON (Volume's VolumeSource, Probe's handler).
                js, ty = "", f'Ty::Inline("{target}")'
            elif js is None:
                js = camel(rust.rstrip("_"))
            out.append(f'        Field {{ tag: {tag}, json: "{js}", ty: {ty}, repeated: {str(repeated).lower()} }},')
        out.append("    ] },")
    out.append("];")
    open(OUT, "w").write("\n".join(out) + "\n")
    print(f"{len(seen)} messages, {len(kinds)} kinds -> {OUT}")


if __name__ == "__main__":
    main()
