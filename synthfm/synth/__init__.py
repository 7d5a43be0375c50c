"""Synthetic data engine: pure functions of an explicit np.random.Generator.

Entry points: :func:`synthfm.synth.recipe.load_recipe` / ``default_recipe`` (what to generate),
:func:`synthfm.synth.generator.sample_at` (sample ``i`` of seed ``s``) and
:class:`synthfm.synth.dataset.SyntheticStream` (a torch IterableDataset for training).

Modules: ``recipe`` (frozen dataclasses <-> YAML), ``bezier`` + ``shapes`` (shape-aware module),
``labelmaps`` (boundary-aware module), ``scene`` (label map -> clean image, contrast),
``fields`` (fast noise and smooth fields), ``noise`` (noise library), ``artefacts`` (bias, blur,
resolution loss), ``ultrasound`` (fan, shadows), ``flavours`` (modality flavours),
``augment`` (albumentations), ``targets`` (validity), ``generator``, ``dataset``,
``export`` + ``gallery`` (``synthfm generate``).  Nothing is imported here, so importing the
package stays cheap.
"""
