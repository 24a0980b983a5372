//! Writes the man pages and shell completions rendered from the clap definitions into packaging/.
//! Run after changing the CLI: `cargo run --example gen-docs`.

#[path = "docs.rs"]
mod docs;

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (rel, bytes) in docs::render_all() {
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().expect("a file under packaging/"))?;
        std::fs::write(&path, bytes)?;
        println!("wrote {}", rel.display());
    }
    Ok(())
}
