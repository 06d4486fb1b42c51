//! OCI image archives from layer tarballs, with `umoci` (no Docker engine,
//! no registry): the one sequence behind `cargo xtask image` and the node's
//! pause image.

use std::path::Path;
use std::process::Command;

use crate::netns::run_command as run;
use crate::{Error, Result};

/// An image to assemble.
#[derive(Debug, Clone, Copy)]
pub struct OciImage<'a> {
    /// Layer tarballs, bottom first.
    pub layers: &'a [&'a Path],
    /// The tag in the archive's index (`ctr images import --base-name NAME` makes it
    /// `NAME:tag`).
    pub tag: &'a str,
    /// `umoci config` options beyond the platform (`--config.user`, `--config.entrypoint`, …).
    pub config: &'a [String],
}

/// Assembles `image` in `work/oci` and writes it to `output` as a tar archive; returns the
/// bytes of its blobs (the compressed size).
///
/// # Errors
/// `umoci` or `tar` failed, or a file could not be written.
pub fn build_archive(image: &OciImage<'_>, work: &Path, output: &Path) -> Result<u64> {
    let layout = work.join("oci");
    let _ = std::fs::remove_dir_all(&layout);
    let reference = format!("{}:{}", layout.display(), image.tag);
    run(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
        "umoci init",
    )?;
    run(
        Command::new("umoci").args(["new", "--image", &reference]),
        "umoci new",
    )?;
    for layer in image.layers {
        run(
            Command::new("umoci")
                .args(["raw", "add-layer", "--image", &reference])
                .arg(layer),
            "umoci raw add-layer",
        )?;
    }
    run(
        Command::new("umoci")
            .args([
                "config",
                "--image",
                &reference,
                "--architecture",
                "amd64",
                "--os",
                "linux",
            ])
            .args(image.config),
        "umoci config",
    )?;
    run(
        Command::new("umoci").args(["gc", "--layout"]).arg(&layout),
        "umoci gc",
    )?;
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
    }
    let partial = output.with_extension("partial");
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&partial)
            .arg("."),
        "tar the image",
    )?;
    std::fs::rename(&partial, output).map_err(Error::io("rename", &partial))?;
    let compressed = dir_size(&layout.join("blobs"))?;
    let _ = std::fs::remove_dir_all(&layout);
    Ok(compressed)
}

/// Total bytes of the files under `dir`.
fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let entry = entry.map_err(Error::io("list", dir))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(Error::io("stat", &path))?;
        total += if meta.is_dir() {
            dir_size(&path)?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
