"""Where images come from: identity folders and pair lists (``folders``), the course's sampler (``sampler``),
the decoded-image cache (``cache``, its stored formats ``cache_formats`` and on-disk entries ``cache_entry``),
the batch loader (``loader``), augmentation (``augment``, its ops ``augment_ops``), tensor transforms
(``transforms``), synthetic faces (``synth``, with ``synth_faces`` and ``synth_paint``) and ``data check``
(``datacheck``)."""
