"""Model artifacts, below everything that builds or serves models: where they live
(``locations``), which base models exist and how to fetch them (``bases``), file hashes
(``hashing``), GGUF metadata (``gguf_file``) and the manifests that record how each was made
(``manifest``). Standard library and PyYAML only: the service imports it too."""
