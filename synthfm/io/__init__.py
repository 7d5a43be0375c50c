"""Reading and writing images and volumes, intensity presets, atomic writes."""
