//! The files a finished simulated run produces, as a real trainer would: a PEFT LoRA adapter
//! (`adapter_model.safetensors` with PEFT tensor names and shapes for the base model's layers
//! and the target modules, the key/value and MLP widths included, BF16: as llama.cpp's
//! converter takes them), its `adapter_config.json`, and a small `tokenizer.json`.

use sha2::{Digest, Sha256};

use super::model::{unit, SimJob};
use domain::job::config::BaseModel;

pub const ADAPTER_MODEL: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const TOKENIZER: &str = "tokenizer.json";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The tensor names and shapes of the adapter, in file order.
pub fn tensor_layout(job: &SimJob) -> Vec<(String, [u64; 2])> {
    let model =
        BaseModel::find(&job.request.base_model).unwrap_or(&domain::job::config::BASE_MODELS[1]);
    let rank = u64::from(job.request.hyperparameters.lora_rank);
    let mut tensors = Vec::new();
    for layer in 0..model.layers {
        for module in &job.request.hyperparameters.target_modules {
            let (input, output) = model.projection(*module);
            let prefix = format!(
                "base_model.model.model.layers.{layer}.{}.{}",
                module.block(),
                module.as_str()
            );
            tensors.push((format!("{prefix}.lora_A.weight"), [rank, u64::from(input)]));
            tensors.push((format!("{prefix}.lora_B.weight"), [u64::from(output), rank]));
        }
    }
    tensors
}

/// A valid safetensors file: 8-byte little-endian header length, the JSON header (dtype,
/// shape, data offsets per tensor), then the BF16 data (small deterministic values).
pub fn adapter_model(job: &SimJob) -> Vec<u8> {
    let (mut out, layout) = safetensors_header(job);
    out.reserve_exact(tensor_bytes(&layout));
    let mut i = 0u64;
    for (name, shape) in &layout {
        let scale = scale_of(name);
        for _ in 0..shape[0] * shape[1] {
            let value = ((unit(job.seed, 11, i) - 0.5) * 2.0 * scale) as f32;
            out.extend_from_slice(&((value.to_bits() >> 16) as u16).to_le_bytes());
            i += 1;
        }
    }
    out
}

/// The adapter saved at the checkpoint of `step`: the same tensors, other values. A run has
/// about ten checkpoints, so each tensor repeats one block of values made for the step (the
/// file stays cheap to make; its bytes still differ from step to step).
pub fn checkpoint_adapter(job: &SimJob, step: u64) -> Vec<u8> {
    const BLOCK: u64 = 4096;
    let seed = job.seed ^ step.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let (mut out, layout) = safetensors_header(job);
    out.reserve_exact(tensor_bytes(&layout));
    for (t, (name, shape)) in layout.iter().enumerate() {
        let scale = scale_of(name);
        let block: Vec<u8> = (0..BLOCK)
            .flat_map(|i| {
                let value = ((unit(seed, 12 + t as u64, i) - 0.5) * 2.0 * scale) as f32;
                ((value.to_bits() >> 16) as u16).to_le_bytes()
            })
            .collect();
        let mut left = (shape[0] * shape[1] * 2) as usize;
        while left > 0 {
            let n = left.min(block.len());
            out.extend_from_slice(&block[..n]);
            left -= n;
        }
    }
    out
}

/// The bytes of the tensors after the header (bf16), reserved at once: grown by doubling,
/// making a 4 MB adapter touched twice its size.
fn tensor_bytes<N>(layout: &[(N, [u64; 2])]) -> usize {
    layout
        .iter()
        .map(|(_, shape)| (shape[0] * shape[1] * 2) as usize)
        .sum()
}

fn scale_of(tensor: &str) -> f64 {
    if tensor.ends_with("lora_B.weight") {
        0.002
    } else {
        0.02
    }
}

/// The file's start (header length and JSON header) and the tensor layout whose data follows.
fn safetensors_header(job: &SimJob) -> (Vec<u8>, Vec<(String, [u64; 2])>) {
    let layout = tensor_layout(job);
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, shape) in &layout {
        let bytes = shape[0] * shape[1] * 2;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "generator": "brightrun-cluster-sim"}),
    );
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    // The data starts 8-byte aligned, as the reference implementation writes it.
    while !(8 + header.len()).is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + offset as usize);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    (out, layout)
}

/// PEFT's `adapter_config.json`.
pub fn adapter_config(job: &SimJob) -> Vec<u8> {
    let h = &job.request.hyperparameters;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": job.request.base_model,
        "r": h.lora_rank,
        "lora_alpha": h.lora_alpha,
        "lora_dropout": h.lora_dropout,
        "target_modules": h.target_modules.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "modules_to_save": null,
        "revision": null,
    });
    serde_json::to_vec_pretty(&config).unwrap_or_default()
}

/// A small tokenizer description (the base model's tokenizer is not redistributed).
pub fn tokenizer(job: &SimJob) -> Vec<u8> {
    let config = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            {"id": 0, "content": "<|begin_of_text|>", "special": true},
            {"id": 1, "content": "<|end_of_text|>", "special": true}
        ],
        "model": {"type": "BPE", "base_model": job.request.base_model, "vocab": {}, "merges": []}
    });
    serde_json::to_vec_pretty(&config).unwrap_or_default()
}

/// The names of a finished run's artifacts, in report order.
pub const NAMES: [&str; 3] = [ADAPTER_MODEL, ADAPTER_CONFIG, TOKENIZER];

/// The bytes of the artifact called `name`, made again each time (they depend on the job
/// only); none for a name the run does not produce.
pub fn one(job: &SimJob, name: &str) -> Option<Vec<u8>> {
    match name {
        ADAPTER_MODEL => Some(adapter_model(job)),
        ADAPTER_CONFIG => Some(adapter_config(job)),
        TOKENIZER => Some(tokenizer(job)),
        _ => None,
    }
}
