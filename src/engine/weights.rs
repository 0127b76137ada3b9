//! Model weights: the tensors of a GGUF file, loaded into backend memory.
//!
//! [`Weights::load`] validates every tensor of the file (supported type,
//! shape consistent with its byte size), places it, then reads its bytes from
//! the file once. Quantized weights stay quantized.
//!
//! # Placement
//!
//! Tensors that the model multiplies as matrices (the caller's `is_matmul`
//! says which) go to the backend's first extra buffer type that supports that
//! product, like llama.cpp does: on the CPU that is the "repack" buffer, which
//! interleaves Q4_0/Q4_K/IQ4_NL/Q8_0 rows for faster kernels. Everything else
//! (embeddings read by row, norms, biases) goes to plain backend memory.
//!
//! With a GPU ([`GpuWeights`]), the tensors it holds go to the GPU's memory
//! instead, and some file tensors can be loaded twice, once on each side
//! (tied embeddings: the CPU reads rows of `token_embd.weight`, the GPU
//! multiplies by it as the output head).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::EngineError;
use super::ffi::ggml::{Backend, GgmlType, Tensor, TensorArena, TensorId};
use super::ffi::gguf::{GgufFile, TensorInfo};

/// Which arena a weight lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arena {
    Plain,
    Extra,
    Gpu,
}

/// The GPU share of a model's weights, for [`Weights::load`].
pub struct GpuWeights<'a> {
    /// The GPU's backend.
    pub backend: &'a Backend,
    /// Whether the file tensor `name` lives on the GPU.
    pub holds: &'a dyn Fn(&str) -> bool,
    /// File tensors also loaded onto the GPU under another name:
    /// `(file name, GPU name)`.
    pub copies: Vec<(String, String)>,
}

/// A handle to one loaded weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightRef {
    arena: Arena,
    id: TensorId,
}

/// All tensors of a model file, in backend memory.
pub struct Weights {
    path: PathBuf,
    plain: TensorArena,
    extra: TensorArena,
    gpu: TensorArena,
    by_name: HashMap<String, WeightRef>,
    extra_buffer: Option<String>,
}

/// Dims of a tensor as ggml `ne` (innermost first). ggml's GGUF parser has
/// already checked rank, block alignment and byte size.
fn dims(t: &TensorInfo) -> Vec<i64> {
    t.shape
        .iter()
        .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
        .collect()
}

impl Weights {
    /// Loads every tensor of `gguf` for the CPU `backend`, or onto the GPU
    /// where `gpu` holds it; `is_matmul(name)` tells which tensors are used
    /// as matrix-product weights, which go to the repacked layout where the
    /// backend has one and `repack` allows.
    pub fn load(
        gguf: &GgufFile,
        backend: &Backend,
        gpu: Option<&GpuWeights<'_>>,
        is_matmul: &dyn Fn(&str) -> bool,
        repack: bool,
    ) -> Result<Self, EngineError> {
        let path = gguf.path().to_path_buf();
        let infos = gguf.tensors();
        for t in &infos {
            let ty = GgmlType(t.ggml_type);
            if !ty.is_supported_weight() {
                return Err(EngineError::UnsupportedTensorType {
                    path,
                    tensor: t.name.clone(),
                    ty: ty.name(),
                    supported: GgmlType::supported_weight_names(),
                });
            }
        }
        let extra_buft = backend
            .extra_buffer_types()
            .into_iter()
            .next()
            .filter(|_| repack);
        let mut plain = TensorArena::new(infos.len());
        let mut extra = TensorArena::new(infos.len());
        let n_copies = gpu.map_or(0, |g| g.copies.len());
        let mut on_gpu = TensorArena::new(infos.len() + n_copies);
        let mut by_name = HashMap::with_capacity(infos.len());
        // (file tensor index, where it goes), in reading order
        let mut placed = Vec::with_capacity(infos.len() + n_copies);
        for (i, t) in infos.iter().enumerate() {
            let ne = dims(t);
            let ty = GgmlType(t.ggml_type);
            if let Some(g) = gpu {
                for (_, alias) in g.copies.iter().filter(|(from, _)| *from == t.name) {
                    let r = WeightRef {
                        arena: Arena::Gpu,
                        id: on_gpu.add(ty, &ne, alias)?,
                    };
                    by_name.insert(alias.clone(), r);
                    placed.push((i, r));
                }
                if (g.holds)(&t.name) {
                    let r = WeightRef {
                        arena: Arena::Gpu,
                        id: on_gpu.add(ty, &ne, &t.name)?,
                    };
                    by_name.insert(t.name.clone(), r);
                    placed.push((i, r));
                    continue;
                }
            }
            let to_extra = match extra_buft {
                Some(buft) if ne.len() == 2 && is_matmul(&t.name) => {
                    backend.supports_matmul_weight(buft, ty, [ne[0], ne[1]])
                }
                _ => false,
            };
            let (arena, id) = if to_extra {
                (Arena::Extra, extra.add(ty, &ne, &t.name)?)
            } else {
                (Arena::Plain, plain.add(ty, &ne, &t.name)?)
            };
            let r = WeightRef { arena, id };
            by_name.insert(t.name.clone(), r);
            placed.push((i, r));
        }
        plain.allocate(backend.buffer_type(), "model weights", true)?;
        if let Some(buft) = extra_buft {
            extra.allocate(buft, "repacked model weights", true)?;
        }
        if let Some(g) = gpu {
            on_gpu.allocate(g.backend.buffer_type(), "model weights on the GPU", true)?;
        }
        let extra_buffer = extra_buft
            .filter(|_| extra.size_bytes() > 0)
            .map(|b| b.name());
        let weights = Self {
            path,
            plain,
            extra,
            gpu: on_gpu,
            by_name,
            extra_buffer,
        };
        weights.read_data(gguf, &infos, &placed)?;
        Ok(weights)
    }

    /// Reads each placed tensor's bytes (`placed`: index into `infos`, and
    /// where it goes) from the file into its backend memory.
    fn read_data(
        &self,
        gguf: &GgufFile,
        infos: &[TensorInfo],
        placed: &[(usize, WeightRef)],
    ) -> Result<(), EngineError> {
        let read_err = |source| EngineError::Read {
            path: self.path.clone(),
            source,
        };
        let file = File::open(&self.path).map_err(read_err)?;
        let mut buf = Vec::new();
        for &(i, r) in placed {
            let t = &infos[i];
            let size = usize::try_from(t.size).map_err(|_| {
                read_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "tensor larger than memory",
                ))
            })?;
            buf.resize(size, 0);
            file.read_exact_at(&mut buf, gguf.data_offset() + t.offset)
                .map_err(read_err)?;
            self.get(r).write_bytes(&buf)?;
        }
        Ok(())
    }

    /// The model file the weights came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The weight named `name`, if the file has it.
    pub fn find(&self, name: &str) -> Option<WeightRef> {
        self.by_name.get(name).copied()
    }

    /// The weight `name` with dims `ne` (ggml order); a missing tensor or a
    /// wrong shape is an error naming it. `arch` names the architecture in
    /// the message.
    pub fn require(&self, name: &str, ne: &[i64], arch: &str) -> Result<WeightRef, EngineError> {
        let r = self.find(name).ok_or_else(|| EngineError::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
            arch: arch.to_owned(),
        })?;
        let found = self.get(r).ne();
        let n = found
            .iter()
            .rposition(|&d| d != 1)
            .map_or(1, |p| p + 1)
            .max(ne.len());
        if found[..n] != *ne {
            return Err(EngineError::TensorShape {
                path: self.path.clone(),
                tensor: name.to_owned(),
                expected: ne.to_vec(),
                found: found[..n].to_vec(),
            });
        }
        Ok(r)
    }

    /// Like [`Weights::require`] but `Ok(None)` when the tensor is absent.
    pub fn optional(
        &self,
        name: &str,
        ne: &[i64],
        arch: &str,
    ) -> Result<Option<WeightRef>, EngineError> {
        match self.find(name) {
            None => Ok(None),
            Some(_) => self.require(name, ne, arch).map(Some),
        }
    }

    /// The tensor behind a handle.
    pub fn get(&self, r: WeightRef) -> Tensor<'_> {
        match r.arena {
            Arena::Plain => self.plain.get(r.id),
            Arena::Extra => self.extra.get(r.id),
            Arena::Gpu => self.gpu.get(r.id),
        }
    }

    /// Bytes of backend memory held: (plain, extra/repacked).
    pub fn size_bytes(&self) -> (usize, usize) {
        (self.plain.size_bytes(), self.extra.size_bytes())
    }

    /// Bytes of GPU memory held.
    pub fn gpu_bytes(&self) -> usize {
        self.gpu.size_bytes()
    }

    /// Name of the extra buffer type in use ("CPU_REPACK"), if any.
    pub fn extra_buffer(&self) -> Option<&str> {
        self.extra_buffer.as_deref()
    }
}
