//! The node image: `faultline-node` built as a static binary and packed into an
//! image `FROM scratch` through the Docker API's classic builder (no BuildKit, no
//! shell script). The tag carries a hash of the binary, so a stale image is never
//! used and an unchanged one is never rebuilt.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use testcontainers::bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
use testcontainers::bollard::{body_full, Docker};

/// The Rust target the static binary is built for.
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Image repository name.
pub const REPOSITORY: &str = "faultline-node";
/// The harness's own image (for the dashboard beside a docker-compose cluster).
pub const HARNESS_REPOSITORY: &str = "faultline-harness";

/// A file of an image: its path inside (relative to `/`), mode and contents.
type ImageFile = (String, u32, Vec<u8>);

/// A ready image and what making it cost.
#[derive(Debug, Clone)]
pub struct NodeImage {
    /// `faultline-node:<hash>`.
    pub tag: String,
    /// Whether this call built it (false: it was already there).
    pub built: bool,
    /// Seconds spent building the image (not the binary); 0 when reused.
    pub build_seconds: f64,
    /// Size of the static binary, which is the whole image.
    pub bytes: u64,
}

/// Builds the static node binary from the source tree (a no-op when up to date)
/// and returns its path; `explicit` skips the build.
pub fn static_binary(explicit: Option<&Path>, quiet: bool) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--node-bin {}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let root = super::super::node_binary::workspace().context(
        "the Docker runtime builds the node binary from its source tree, which is gone; pass --node-bin with a static binary",
    )?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !flags.contains("crt-static") {
        flags.push_str(" -C target-feature=+crt-static");
    }
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .env("RUSTFLAGS", flags.trim())
        .args(["build", "--release", "-p", "system", "--bin", REPOSITORY])
        .args(["--target", TARGET]);
    if quiet {
        cmd.arg("--quiet");
    }
    let status = cmd
        .status()
        .context("cannot run cargo to build the static node binary")?;
    if !status.success() {
        bail!("building the static {REPOSITORY} failed (cargo exit {status})");
    }
    let bin = super::super::node_binary::target_dir(&root)
        .join(TARGET)
        .join("release")
        .join(REPOSITORY);
    if !bin.is_file() {
        bail!("cargo built no {}", bin.display());
    }
    Ok(bin)
}

/// A 64-bit FNV-1a hash: enough to tell one binary from another.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One file in a ustar archive: a 512-byte header, the data, padding to 512.
fn tar_entry(out: &mut Vec<u8>, name: &str, mode: u32, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], v: u64| {
        let s = format!("{:0width$o}\0", v, width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], data.len() as u64);
    octal(&mut h[136..148], 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field read as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// The build context: `files` and a Dockerfile with only `FROM scratch`, a
/// `COPY` per file and `ENTRYPOINT` (the first file).
fn context_of(files: &[ImageFile]) -> Vec<u8> {
    let mut dockerfile = String::from("FROM scratch\n");
    for (path, _, _) in files {
        dockerfile.push_str(&format!("COPY {path} /{path}\n"));
    }
    dockerfile.push_str(&format!("ENTRYPOINT [\"/{}\"]\n", files[0].0));
    let total: usize = files.iter().map(|f| f.2.len()).sum();
    let mut tar = Vec::with_capacity(total + 4096 * (files.len() + 1));
    tar_entry(&mut tar, "Dockerfile", 0o644, dockerfile.as_bytes());
    for (path, mode, data) in files {
        tar_entry(&mut tar, path, *mode, data);
    }
    tar.resize(tar.len() + 1024, 0);
    tar
}

/// The running harness and the shared libraries it links (as `ldd` names
/// them, the dynamic loader included), each at its own path: an image needs no
/// static build of the harness.
fn harness_files() -> anyhow::Result<Vec<ImageFile>> {
    let exe = std::env::current_exe().context("cannot find the harness's own executable")?;
    let bytes = std::fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
    let mut files = vec![("harness".to_string(), 0o755, bytes)];
    let out = Command::new("ldd")
        .arg(&exe)
        .output()
        .context("cannot run ldd to list the harness's libraries")?;
    // A static executable: ldd fails, and nothing else is needed.
    if out.status.success() {
        for lib in linked_libraries(&String::from_utf8_lossy(&out.stdout)) {
            let data = std::fs::read(&lib).with_context(|| format!("cannot read {lib}"))?;
            files.push((lib.trim_start_matches('/').to_string(), 0o755, data));
        }
    }
    Ok(files)
}

/// The absolute library paths in `ldd` output (`name => /path (addr)` or
/// `/path (addr)`; the vDSO has no file).
fn linked_libraries(ldd: &str) -> Vec<String> {
    ldd.lines()
        .filter_map(|line| {
            let path = line.rsplit("=>").next()?.split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

/// The image for `binary`, built when missing.
pub async fn ensure(docker: &Docker, binary: &Path) -> anyhow::Result<NodeImage> {
    let bytes =
        std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    ensure_files(
        docker,
        REPOSITORY,
        vec![(REPOSITORY.to_string(), 0o755, bytes)],
    )
    .await
}

/// The image of `files` in `repository` (tagged with their hash), built when
/// missing.
async fn ensure_files(
    docker: &Docker,
    repository: &str,
    files: Vec<ImageFile>,
) -> anyhow::Result<NodeImage> {
    let hash = files.iter().fold(0u64, |h, (path, _, data)| {
        h.rotate_left(7) ^ fingerprint(path.as_bytes()) ^ fingerprint(data)
    });
    let tag = format!("{repository}:{hash:016x}");
    let size = files.iter().map(|f| f.2.len() as u64).sum();
    if docker.inspect_image(&tag).await.is_ok() {
        return Ok(NodeImage {
            tag,
            built: false,
            build_seconds: 0.0,
            bytes: size,
        });
    }
    let started = Instant::now();
    let options = BuildImageOptionsBuilder::new()
        .t(&tag)
        .rm(true)
        .forcerm(true)
        .version(BuilderVersion::BuilderV1)
        .build();
    let mut progress =
        docker.build_image(options, None, Some(body_full(context_of(&files).into())));
    while let Some(step) = progress.next().await {
        let step = step.context("docker image build")?;
        if let Some(e) = step.error_detail.and_then(|d| d.message) {
            bail!("docker image build failed: {e}");
        }
    }
    docker
        .inspect_image(&tag)
        .await
        .with_context(|| format!("the build finished but {tag} is not there"))?;
    Ok(NodeImage {
        tag,
        built: true,
        build_seconds: started.elapsed().as_secs_f64(),
        bytes: size,
    })
}

/// Tags `image` as `REPOSITORY:latest` (what docker-compose.yml names).
async fn tag_latest(docker: &Docker, image: &NodeImage) -> anyhow::Result<()> {
    let repo = image
        .tag
        .split_once(':')
        .map_or(image.tag.as_str(), |(r, _)| r);
    docker
        .tag_image(
            &image.tag,
            Some(
                testcontainers::bollard::query_parameters::TagImageOptionsBuilder::new()
                    .repo(repo)
                    .tag("latest")
                    .build(),
            ),
        )
        .await
        .with_context(|| format!("docker tag {} {repo}:latest", image.tag))
}

/// `harness image`: build (or find) the node image and the harness's own
/// (for the dashboard) and tag both `latest`.
pub fn command(node_bin: Option<&Path>) -> std::process::ExitCode {
    let outcome = (|| -> anyhow::Result<Vec<NodeImage>> {
        let bin = static_binary(node_bin, false)?;
        let harness = harness_files()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let docker = super::connect().await?;
            let node = ensure(&docker, &bin).await?;
            tag_latest(&docker, &node).await?;
            let dashboard = ensure_files(&docker, HARNESS_REPOSITORY, harness).await?;
            tag_latest(&docker, &dashboard).await?;
            Ok(vec![node, dashboard])
        })
    })();
    match outcome {
        Ok(images) => {
            for image in images {
                println!(
                    "{} ({}, {:.1} MB){}; tagged {}:latest",
                    image.tag,
                    if image.built { "built" } else { "up to date" },
                    image.bytes as f64 / 1e6,
                    if image.built {
                        format!(" in {:.2} s", image.build_seconds)
                    } else {
                        String::new()
                    },
                    image.tag.split_once(':').map_or("", |(r, _)| r),
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("harness image: {e:#}");
            std::process::ExitCode::from(crate::EXIT_INTERNAL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_have_valid_checksums_and_sizes() {
        let tar = context_of(&[(REPOSITORY.to_string(), 0o755, b"0123456789".to_vec())]);
        // Dockerfile header + 1 data block, binary header + 1 data block, 2 end blocks.
        assert_eq!(tar.len(), 512 * 6);
        for at in [0, 1024] {
            let h = &tar[at..at + 512];
            let stored =
                u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap().trim(), 8).unwrap();
            let mut copy = h.to_vec();
            copy[148..156].copy_from_slice(b"        ");
            assert_eq!(stored, copy.iter().map(|&b| b as u64).sum::<u64>());
        }
        assert_eq!(&tar[1024..1024 + REPOSITORY.len()], REPOSITORY.as_bytes());
        assert_eq!(&tar[1024 + 124..1024 + 135], b"00000000012");
        assert_eq!(&tar[1536..1546], b"0123456789");
    }

    #[test]
    fn ldd_output_names_every_library_file_and_the_loader() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x7f1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f2)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f3)\n";
        assert_eq!(
            linked_libraries(ldd),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        let tar = context_of(&[
            ("harness".into(), 0o755, b"bin".to_vec()),
            ("lib64/ld.so".into(), 0o755, b"ld".to_vec()),
        ]);
        let dockerfile = String::from_utf8_lossy(&tar[512..1024]);
        assert!(dockerfile.starts_with("FROM scratch\nCOPY harness /harness\nCOPY lib64/ld.so /lib64/ld.so\nENTRYPOINT [\"/harness\"]\n"), "{dockerfile}");
    }

    #[test]
    fn different_binaries_get_different_tags() {
        assert_ne!(fingerprint(b"a"), fingerprint(b"b"));
        assert_eq!(fingerprint(b"abc"), fingerprint(b"abc"));
    }
}
