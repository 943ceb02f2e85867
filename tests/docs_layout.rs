//! The README's layout section and docs/architecture.md describe the folders and modules that
//! exist: a folder or module added, renamed or removed without the docs fails here.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text of the README from `## Layout` to the next section.
fn layout_section() -> String {
    let readme = read("README.md");
    let start = readme.find("## Layout").expect("README has a Layout section");
    let rest = &readme[start + 1..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

/// Top-level folders of the repository, hidden ones and build output left out.
fn top_level_folders() -> Vec<String> {
    let mut folders: Vec<String> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.') && name != "target")
        .collect();
    folders.sort();
    folders
}

/// `pub mod NAME;` lines of a crate root.
fn public_modules(lib: &str) -> Vec<String> {
    read(lib).lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|l| l.trim_end_matches(';').to_string()).collect()
}

#[test]
fn readme_layout_names_every_top_level_folder() {
    let layout = layout_section();
    let folders = top_level_folders();
    assert!(folders.contains(&"core".to_string()), "the folders are read: {folders:?}");
    for folder in folders {
        assert!(layout.contains(&format!("`{folder}/`")), "README's layout does not mention `{folder}/`");
    }
}

#[test]
fn architecture_names_every_module_of_both_libraries() {
    let doc = read("docs/architecture.md");
    for lib in ["core/src/lib.rs", "sim/src/lib.rs"] {
        let modules = public_modules(lib);
        assert!(modules.len() >= 4, "{lib} modules are read: {modules:?}");
        for module in modules {
            assert!(doc.contains(&format!("`{module}`")), "docs/architecture.md does not describe `{module}` of {lib}");
        }
    }
}
