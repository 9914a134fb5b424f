//! Run-time compilation of the CUDA kernels (`kernels/cuda/*.cu`, embedded with
//! `include_str!`) by NVRTC through cudarc, with the compiled PTX cached on disk under a key
//! of the source, the architecture and the options; and [`check_all`], which compiles every
//! kernel for `sm_90` with register spills, and wgmma pipelines ptxas had to serialize, as
//! errors (CI runs it with NVRTC from PyPI, no GPU needed).

use cudarc::nvrtc::{result as nvrtc, Ptx};
use sha2::{Digest, Sha256};
use std::ffi::{CStr, CString};
use std::path::PathBuf;

/// Prepended to every kernel file for NVRTC: the inline-PTX wrappers (the simulator
/// brings its own, `sim.rs`).
pub const PTX: &str = include_str!("../../cuda/ptx.cuh");
/// Prepended to every kernel file after them: bf16 helpers and fixed-order reductions.
pub const COMMON: &str = include_str!("../../cuda/common.cuh");

/// One kernel file: its name and source.
#[derive(Debug, Clone, Copy)]
pub struct KernelFile {
    pub name: &'static str,
    pub source: &'static str,
    /// The kernels (extern "C" names) it defines.
    pub kernels: &'static [&'static str],
}

pub const ENCODER: KernelFile = KernelFile {
    name: "encoder",
    source: include_str!("../../cuda/encoder.cu"),
    kernels: &[
        "encoder_forward",
        "encoder_backward_wpe",
        "encoder_backward_wte",
    ],
};
pub const LAYERNORM: KernelFile = KernelFile {
    name: "layernorm",
    source: include_str!("../../cuda/layernorm.cu"),
    kernels: &[
        "residual_layernorm_forward",
        "layernorm_backward_input",
        "layernorm_backward_params",
        "layernorm_backward_fused",
        "column_sums",
        "sum_partials",
    ],
};
pub const GELU: KernelFile = KernelFile {
    name: "gelu",
    source: include_str!("../../cuda/gelu.cu"),
    kernels: &["gelu_forward", "gelu_backward"],
};
pub const CLASSIFIER: KernelFile = KernelFile {
    name: "classifier",
    source: include_str!("../../cuda/classifier.cu"),
    kernels: &["fused_classifier"],
};
pub const OPTIMIZER: KernelFile = KernelFile {
    name: "optimizer",
    source: include_str!("../../cuda/optimizer.cu"),
    kernels: &[
        "adamw",
        "sum_squares",
        "sum_all",
        "cast_to_bf16",
        "cast_to_f32",
        "add_bias",
    ],
};
pub const ATTENTION: KernelFile = KernelFile {
    name: "attention",
    source: include_str!("../../cuda/attention.cu"),
    kernels: &[
        "attention_forward",
        "attention_backward_dkdv",
        "attention_backward_dq",
    ],
};

pub const FLASH: KernelFile = KernelFile {
    name: "flash",
    source: include_str!("../../cuda/flash.cu"),
    kernels: &[
        "flash_forward",
        "flash_backward_dkdv",
        "flash_backward_dq",
        "flash_backward_d",
    ],
};
/// flash.cu again with the attention probabilities' dropout (`-DDROPOUT`).
pub const FLASH_DROPOUT: KernelFile = KernelFile {
    name: "flash_dropout",
    source: FLASH.source,
    kernels: &[
        "flash_forward_dropout",
        "flash_backward_dkdv_dropout",
        "flash_backward_dq_dropout",
    ],
};
/// flash.cu on Hopper's warpgroup MMA (`-DWGMMA`, built for `sm_90a`).
pub const FLASH_WGMMA: KernelFile = KernelFile {
    name: "flash_wgmma",
    source: FLASH.source,
    kernels: &[
        "flash_forward_wg",
        "flash_backward_dkdv_wg",
        "flash_backward_dq_wg",
    ],
};
/// flash.cu on the warpgroup MMA with the attention probabilities' dropout.
pub const FLASH_WGMMA_DROPOUT: KernelFile = KernelFile {
    name: "flash_wgmma_dropout",
    source: FLASH.source,
    kernels: &[
        "flash_forward_dropout_wg",
        "flash_backward_dkdv_dropout_wg",
        "flash_backward_dq_dropout_wg",
    ],
};
pub const DROPOUT: KernelFile = KernelFile {
    name: "dropout",
    source: include_str!("../../cuda/dropout.cu"),
    kernels: &["dropout"],
};

/// Every kernel file.
pub const FILES: [KernelFile; 11] = [
    ENCODER,
    LAYERNORM,
    GELU,
    CLASSIFIER,
    OPTIMIZER,
    ATTENTION,
    FLASH,
    FLASH_DROPOUT,
    FLASH_WGMMA,
    FLASH_WGMMA_DROPOUT,
    DROPOUT,
];

/// The head sizes `file` is built for (one build each; the head size is a compile-time
/// constant in the attention kernels), or none where it does not depend on it.
pub fn head_sizes(file: &KernelFile) -> &'static [usize] {
    if file.source == FLASH.source {
        &HEAD_SIZES
    } else if file.name == ATTENTION.name {
        &SIMT_HEAD_SIZES
    } else {
        &[]
    }
}

/// Whether `file` is built once per head size.
pub fn per_head_size(file: &KernelFile) -> bool {
    !head_sizes(file).is_empty()
}

/// Whether a backend for a model of head size `head_size` builds `file` (the CUDA-core
/// attention only where it takes that head size).
pub fn built_for(file: &KernelFile, head_size: usize) -> bool {
    !per_head_size(file) || head_sizes(file).contains(&head_size)
}

/// Whether `file` runs on Hopper's warpgroup MMA (only `sm_90`-class GPUs load it).
pub fn hopper_only(file: &KernelFile) -> bool {
    [FLASH_WGMMA.name, FLASH_WGMMA_DROPOUT.name].contains(&file.name)
}

/// The architecture `file` is compiled for on a GPU of `arch`: `sm_90a` (the
/// architecture-specific features wgmma needs) for the warpgroup-MMA builds, `arch` for the
/// rest.
pub fn arch_for(file: &KernelFile, arch: &'static str) -> &'static str {
    if hopper_only(file) {
        "sm_90a"
    } else {
        arch
    }
}

/// Head sizes the CUDA backend takes, every multiple of 16 up to 128 (the tensor cores'
/// k-step): the tensor-core attention (flash.cu, every build) is built for each.
pub const HEAD_SIZES: [usize; 8] = [16, 32, 48, 64, 80, 96, 112, 128];

/// Head sizes the CUDA-core attention (attention.cu, `HARMAN_ATTENTION=simt`) is built for:
/// its threads hold two head-size vectors in registers, which would spill past 64.
pub const SIMT_HEAD_SIZES: [usize; 4] = [16, 32, 48, 64];

/// Bytes of dynamic shared memory kernel `name` needs in the build for head size
/// `head_size`: past head size 64 flash.cu's 64-row tiles (`SHARED_TILES` there: the forward
/// pass 5, or 6 with wgmma, dK/dV 4, or 6 with wgmma, dQ 4), 64 × (HS + 8) bf16 each in the mma.sync builds
/// (rows padded for ldmatrix), 64 × HS in the warpgroup-MMA ones; 0 for every other kernel
/// and at head sizes up to 64, where the tiles are static arrays. The kernels trap when a
/// launch passes less (the simulator also refuses bytes a kernel does not use).
pub fn dynamic_shared_bytes(name: &str, head_size: usize) -> u32 {
    if head_size <= 64 {
        return 0;
    }
    let wgmma = name.ends_with("_wg");
    let tiles = if name.starts_with("flash_forward") {
        // The queries (one tile per warpgroup: two with wgmma), two each of keys and values.
        if wgmma {
            6
        } else {
            5
        }
    } else if name.starts_with("flash_backward_dkdv") {
        if wgmma {
            6
        } else {
            4
        }
    } else if name.starts_with("flash_backward_dq") {
        4
    } else {
        return 0;
    };
    let tile = 64 * if wgmma { head_size } else { head_size + 8 } * 2;
    (tiles * tile) as u32
}

/// The dynamic shared memory a kernel may take without asking for more (CUDA's default cap;
/// beyond it a kernel needs `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES` set).
pub const DEFAULT_DYNAMIC_SHARED: u32 = 48 * 1024;

/// Why a kernel did not compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("NVRTC is not installed (libnvrtc not found): {0}")]
    NoNvrtc(String),
    #[error("kernels/cuda/{file}.cu ({arch}, {defines}): {log}")]
    Failed {
        file: &'static str,
        arch: String,
        defines: String,
        log: String,
    },
}

/// Whether libnvrtc can be loaded (cudarc panics on use otherwise).
pub fn nvrtc_present() -> bool {
    // SAFETY: only probes for the shared library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The compiler options for `arch` (e.g. "sm_90"); `strict` makes spills errors.
fn options(arch: &str, defines: &[String], strict: bool) -> Vec<String> {
    let mut options = vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()];
    options.extend(defines.iter().map(|d| format!("-D{d}")));
    if strict {
        options.push("--ptxas-options=--warn-on-spills".into());
        options.push("--ptxas-options=--warning-as-error".into());
    }
    options
}

/// A remark of ptxas' saying it serialized wgmma or waited for one where the kernel did not
/// (it reports these as information, not warnings): the kernel read or wrote a wgmma's
/// registers while it ran, and lost the overlap it was written for.
fn wgmma_serialized(log: &str) -> Option<&str> {
    log.lines().find(|l| {
        l.contains("ptxas")
            && ((l.contains("Potential Performance Loss") && l.contains("wgmma"))
                || (l.contains("warpgroup.") && l.contains("is injected")))
    })
}

/// NVRTC on `source` with `options`: the PTX and the compiler's log (ptxas' remarks
/// included), or the log of the failure.
fn run_nvrtc(source: &str, options: &[String]) -> Result<(String, String), String> {
    let src = CString::new(source).map_err(|_| "the source holds a NUL byte".to_string())?;
    let prog = nvrtc::create_program(&src, None).map_err(|e| e.to_string())?;
    // SAFETY: `prog` was just created from `src`, which outlives it, and is destroyed once,
    // below; the log and PTX buffers are NUL-terminated by NVRTC.
    unsafe {
        let compiled = nvrtc::compile_program(prog, options);
        let log = nvrtc::get_program_log(prog)
            .map(|l| CStr::from_ptr(l.as_ptr()).to_string_lossy().into_owned())
            .unwrap_or_default();
        let ptx = compiled.and_then(|()| nvrtc::get_ptx(prog));
        let _ = nvrtc::destroy_program(prog);
        match ptx {
            Ok(p) => Ok((
                CStr::from_ptr(p.as_ptr()).to_string_lossy().into_owned(),
                log,
            )),
            Err(e) if log.trim().is_empty() => Err(e.to_string()),
            Err(_) => Err(log),
        }
    }
}

/// The source NVRTC sees: the PTX wrappers, the common helpers, then the file.
pub fn full_source(file: &KernelFile) -> String {
    format!("{PTX}\n{COMMON}\n{}", file.source)
}

/// Compiles one file for `arch` with `-D` defines (e.g. "HS=64"); `strict` makes register
/// spills and serialized wgmma pipelines errors.
pub fn compile(
    file: &KernelFile,
    arch: &'static str,
    defines: &[String],
    strict: bool,
) -> Result<Ptx, CompileError> {
    if !nvrtc_present() {
        return Err(CompileError::NoNvrtc(
            "set LD_LIBRARY_PATH to the folder of libnvrtc.so (scripts/nvrtc-env.sh)".into(),
        ));
    }
    let failed = |log: String| CompileError::Failed {
        file: file.name,
        arch: arch.to_string(),
        defines: defines.join(" "),
        log,
    };
    let (ptx, log) =
        run_nvrtc(&full_source(file), &options(arch, defines, strict)).map_err(failed)?;
    if let (true, Some(remark)) = (strict, wgmma_serialized(&log)) {
        return Err(failed(format!("wgmma pipeline serialized: {remark}")));
    }
    Ok(Ptx::from_src(ptx))
}

/// Where compiled PTX is cached: `$HARMAN_KERNEL_CACHE`, else `$XDG_CACHE_HOME/harman/kernels`,
/// else `~/.cache/harman/kernels`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HARMAN_KERNEL_CACHE") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("harman").join("kernels"))
}

/// A build's cache key: `name` and the first 24 hex digits of the sha256 of `source` and
/// `parts` (architecture, options, compiler version), NUL-separated. The PTX cache and the
/// simulator's libraries share it.
pub(crate) fn cache_key<'a>(
    name: &str,
    source: &str,
    parts: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    format!("{name}-{}", &hex::encode(h.finalize())[..24])
}

/// The PTX cache key: the source, arch, options and NVRTC's version.
fn ptx_cache_key(file: &KernelFile, arch: &str, defines: &[String]) -> String {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two out-parameters; only called once NVRTC is known to load.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    let version = format!("nvrtc {major}.{minor}");
    let parts = std::iter::once(arch)
        .chain(defines.iter().map(String::as_str))
        .chain(std::iter::once(version.as_str()));
    cache_key(file.name, &full_source(file), parts)
}

/// PTX for `file`, from the disk cache when it holds this exact build, else compiled (and
/// stored; a cache that cannot be written is skipped).
pub fn cached(
    file: &KernelFile,
    arch: &'static str,
    defines: &[String],
) -> Result<Ptx, CompileError> {
    let path = cache_dir().map(|d| d.join(format!("{}.ptx", ptx_cache_key(file, arch, defines))));
    if let Some(p) = &path {
        if let Ok(src) = std::fs::read_to_string(p) {
            return Ok(Ptx::from_src(src));
        }
    }
    let ptx = compile(file, arch, defines, false)?;
    if let Some(p) = &path {
        let text = ptx.to_src();
        if let Some(dir) = p.parent() {
            let tmp = p.with_extension(format!("tmp{}", std::process::id()));
            let _ = std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&tmp, text))
                .and_then(|()| std::fs::rename(&tmp, p));
        }
    }
    Ok(ptx)
}

/// The defines `file` is built with for a model of head size `head_size` (only the
/// attention kernels depend on it; the dropout build of flash.cu adds DROPOUT); `chunk`
/// sets the flash backward kernels' chunk of rows (CHUNK, default 16).
pub fn defines(file: &KernelFile, head_size: usize, chunk: Option<usize>) -> Vec<String> {
    let mut defines = Vec::new();
    if per_head_size(file) {
        defines.push(format!("HS={head_size}"));
    }
    if [FLASH_DROPOUT.name, FLASH_WGMMA_DROPOUT.name].contains(&file.name) {
        defines.push("DROPOUT".into());
    }
    if hopper_only(file) {
        defines.push("WGMMA".into());
    }
    if let (Some(rows), true) = (chunk, file.source == FLASH.source) {
        defines.push(format!("CHUNK={rows}"));
    }
    defines
}

/// The chunk of rows `HARMAN_FLASH_CHUNK` asks the flash backward kernels to take (16, 32
/// or 64 = whole tiles; unset: the default, 16), or why the value is refused.
pub fn flash_chunk() -> Result<Option<usize>, String> {
    parse_flash_chunk(std::env::var("HARMAN_FLASH_CHUNK").ok().as_deref())
}

fn parse_flash_chunk(value: Option<&str>) -> Result<Option<usize>, String> {
    let Some(v) = value else { return Ok(None) };
    match v.trim().parse::<usize>() {
        Ok(rows @ (16 | 32 | 64)) => Ok(Some(rows)),
        _ => Err(format!("HARMAN_FLASH_CHUNK={v}: use 16, 32 or 64")),
    }
}

/// Every build of `file`: one per supported head size where it depends on it, and
/// flash.cu's with the other chunk sizes too.
pub fn variants(file: &KernelFile) -> Vec<Vec<String>> {
    let sizes: &[usize] = if per_head_size(file) {
        head_sizes(file)
    } else {
        &[64] // not per head size: one build
    };
    let mut all: Vec<Vec<String>> = sizes
        .iter()
        .flat_map(|&hs| {
            let chunks: &[Option<usize>] = if file.source == FLASH.source {
                chunks_for(hs)
            } else {
                &[None]
            };
            chunks.iter().map(move |&ch| defines(file, hs, ch))
        })
        .collect();
    all.dedup();
    all
}

/// The chunks of rows the flash backward kernels are built with at head size `head_size`:
/// 16 (None, the default) everywhere, and 32 and 64 at head sizes 32 and 64 to compare
/// against (GPT-2's head size is 64; past 64 larger chunks would spill registers, dK and dV
/// alone taking up to 128 a thread).
pub fn chunks_for(head_size: usize) -> &'static [Option<usize>] {
    if matches!(head_size, 32 | 64) {
        &[None, Some(32), Some(64)]
    } else {
        &[None]
    }
}

/// Compiles every kernel file (every variant) for `arch` (the warpgroup-MMA builds for
/// `sm_90a`) with spills as errors; returns the (file, defines, PTX) built.
pub fn check_all(arch: &'static str) -> Result<Vec<(String, String, String)>, CompileError> {
    let mut built = Vec::new();
    for file in FILES {
        let arch = arch_for(&file, arch);
        for defines in variants(&file) {
            let ptx = compile(&file, arch, &defines, true)?;
            let text = ptx.to_src();
            for k in file.kernels {
                if !text.contains(&format!(".entry {k}(")) {
                    return Err(CompileError::Failed {
                        file: file.name,
                        arch: arch.to_string(),
                        defines: defines.join(" "),
                        log: format!("kernel {k} missing from the PTX"),
                    });
                }
            }
            built.push((file.name.to_string(), defines.join(" "), text));
        }
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_chunk_takes_16_32_or_64_and_names_the_fix_otherwise() {
        assert_eq!(parse_flash_chunk(None), Ok(None));
        assert_eq!(parse_flash_chunk(Some("64")), Ok(Some(64)));
        assert_eq!(parse_flash_chunk(Some(" 32 ")), Ok(Some(32)));
        for bad in ["8", "48", "whole", ""] {
            let err = parse_flash_chunk(Some(bad)).unwrap_err();
            assert!(
                err.contains("HARMAN_FLASH_CHUNK") && err.contains("16, 32 or 64"),
                "{err}"
            );
        }
        // The chunk reaches both flash builds and nothing else.
        assert!(defines(&FLASH, 64, Some(32)).contains(&"CHUNK=32".to_string()));
        assert!(defines(&FLASH_DROPOUT, 64, Some(32)).contains(&"CHUNK=32".to_string()));
        assert!(defines(&LAYERNORM, 64, Some(32)).is_empty());
    }

    #[test]
    fn dynamic_shared_memory_is_asked_for_past_head_size_64_only_and_fits_a_hopper_block() {
        let kernels: Vec<&str> = FILES
            .iter()
            .flat_map(|f| f.kernels.iter().copied())
            .collect();
        for k in &kernels {
            let flash = k.starts_with("flash_") && *k != "flash_backward_d";
            for hs in HEAD_SIZES {
                let bytes = dynamic_shared_bytes(k, hs);
                // Static arrays up to 64; past it every flash attention kernel's tiles, no
                // more than an H100/H200 block may have (227 KB).
                assert_eq!(bytes > 0, flash && hs > 64, "{k} at head size {hs}");
                assert!(bytes <= 227 * 1024, "{k}: {bytes}");
            }
            // At 128 each takes more than the default 48 KB (so its cap is raised).
            assert_eq!(
                dynamic_shared_bytes(k, 128) > DEFAULT_DYNAMIC_SHARED,
                flash,
                "{k}"
            );
        }
        // The forward pass: five tiles of 64 rows, padded to 136 bf16 without wgmma.
        assert_eq!(dynamic_shared_bytes("flash_forward", 128), 5 * 64 * 136 * 2);
        assert_eq!(
            dynamic_shared_bytes("flash_backward_dkdv_wg", 128),
            6 * 64 * 128 * 2
        );
    }

    #[test]
    fn a_serialized_wgmma_pipeline_is_found_in_the_log() {
        let log = "ptxas info    : (C7517) warpgroup.wait is injected in around line 585 by \
                   compiler to allow use of registers defined by GMMA in function 'f'\n";
        assert!(wgmma_serialized(log).is_some_and(|l| l.contains("C7517")));
        let serialized = "ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async \
                          instructions are serialized due to the presence of Extern calls";
        assert!(wgmma_serialized(serialized).is_some());
        assert_eq!(wgmma_serialized("ptxas info    : 0 bytes gmem\n"), None);
        let named = "ptxas info    : Compiling entry function 'wgmma_check' for 'sm_90a'";
        assert_eq!(wgmma_serialized(named), None);
        assert_eq!(wgmma_serialized(""), None);
    }

    #[test]
    fn the_warpgroup_builds_are_flash_for_sm_90a_with_wgmma() {
        for file in [FLASH_WGMMA, FLASH_WGMMA_DROPOUT] {
            assert!(hopper_only(&file) && per_head_size(&file));
            assert_eq!(arch_for(&file, "sm_90"), "sm_90a");
            let d = defines(&file, 64, None);
            assert!(d.contains(&"WGMMA".to_string()) && d.contains(&"HS=64".to_string()));
            assert_eq!(
                d.contains(&"DROPOUT".to_string()),
                file.name == FLASH_WGMMA_DROPOUT.name
            );
        }
        assert_eq!(arch_for(&FLASH, "sm_90"), "sm_90");
        assert!(!defines(&FLASH, 64, None).contains(&"WGMMA".to_string()));
    }
}
