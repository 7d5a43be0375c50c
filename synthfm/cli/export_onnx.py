"""``synthfm export-onnx``: the prompt encoder + mask decoder (and a small image encoder) as ONNX."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export-onnx")
@click.option("--model", required=True, help="synthfm checkpoint (.safetensors) or 'default' (the shipped model).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output folder: decoder.onnx, encoder.onnx (small encoders), export.json.")
@click.option("--sam-checkpoint", type=click.Path(path_type=Path), default=None,
              help="Official SAM .pth, for a checkpoint that references an official encoder.")
@click.option("--multimask", is_flag=True,
              help="Export SAM's 3 masks per prompt (default: 1 mask); refused if the checkpoint did not train them.")
@click.option("--allow-untrained", is_flag=True, help="Export --multimask even if the checkpoint did not train it.")
@click.option("--no-encoder", is_flag=True, help="Export the decoder only.")
@click.option("--opset", type=click.IntRange(14, 21), default=17, show_default=True, help="ONNX opset version.")
@click.option("--no-verify", is_flag=True, help="Skip the onnxruntime-vs-PyTorch check.")
@click.option("--overwrite", is_flag=True, help="Replace earlier exports in --out.")
def export_onnx(model, out_dir, sam_checkpoint, multimask, allow_untrained, no_encoder, opset, no_verify,
                overwrite) -> None:
    """Export a synthfm model to ONNX (SAM's decoder convention) and verify it with onnxruntime.

    decoder.onnx takes image_embeddings, point_coords/point_labels (any number of points, model-input
    pixels), mask_input + has_mask_input and orig_im_size, and returns masks (logits at the original
    size), scores and low_res_logits.  See synthfm/inference/onnx_export.py for the exact contract.
    export.json and decoder.onnx's metadata record which outputs the checkpoint trained.
    """
    from synthfm.errors import UserError
    from synthfm.inference.onnx_export import check_output_dir, export_onnx as run_export, require_onnx
    from synthfm.weights import load_model, model_spec
    from synthfm.weights.outputs import trained_outputs_for_spec

    require_onnx()
    check_output_dir(out_dir, overwrite)
    spec = model_spec(model, None, sam_checkpoint)
    outputs = trained_outputs_for_spec(spec)
    if multimask and not allow_untrained:
        outputs.require("multimask", "--multimask", "drop it, or pass --allow-untrained")
    net, metadata = load_model(spec, device="cpu")
    source = {"checkpoint": spec.path.name if spec.path is not None else f"sam_{spec.encoder}", **{k: metadata[k] for k in ("recipe", "train_config") if k in metadata}}
    if "recipe" in source and isinstance(source["recipe"], dict):
        source["recipe"] = source["recipe"].get("name", "custom")
    report = run_export(net, out_dir, multimask=multimask, include_encoder=not no_encoder, opset=opset,
                        verify=not no_verify, overwrite=overwrite, metadata=source, trained_outputs=outputs)
    files = [entry["path"] for entry in report["files"].values() if entry]
    line = f"exported {net.encoder_name} ({net.image_size} px) to {out_dir}: {', '.join(files)}"
    if report.get("encoder_skipped") and not no_encoder:
        line += f" (encoder skipped: {report['encoder_skipped']})"
    click.echo(line)
    if outputs.untrained():
        click.echo(f"note: the checkpoint did not train {', '.join(outputs.untrained())}: those outputs of "
                   f"decoder.onnx are noise (recorded in export.json)", err=True)
    ver = report.get("verification")
    if ver is not None:
        click.echo(f"onnxruntime {ver['onnxruntime']} vs PyTorch: max abs difference {ver['max_abs_diff']:.2e} "
                   f"({'ok' if ver['passed'] else 'ABOVE'} tolerance {ver['tolerance']:g}); details in export.json")
        if not ver["passed"]:
            raise UserError(f"the ONNX graphs differ from PyTorch by {ver['max_abs_diff']:.3g} (see {out_dir}/export.json)")
