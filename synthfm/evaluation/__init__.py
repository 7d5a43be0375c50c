"""Zero-shot evaluation: datasets (read through synthfm.io), the protocol and runner (:mod:`.protocol`),
methods by name (:mod:`.methods`), metrics, classical baselines, reports, 3D propagation evaluation."""
