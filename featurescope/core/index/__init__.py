"""Dataset examples: which images of a folder excite each channel most.

One pass over a folder keeps, per captured layer and channel, the K images with the
highest spatial maximum (and where it was), the mean of those maxima and how often the
channel fired at all. Memory stays flat: only K records per channel are ever held.

- walk.py: the image files of a folder, with size and modification time;
- geometry.py: the preprocessing (resize, crop) and mapping boxes back to the original;
- reduce.py: the per-channel top-K reducer (a capture sink) and the merge of partials;
- dataset.py: decoding in DataLoader worker processes, broken files flagged, not fatal;
- store.py: the index file (one NPZ) and its queries (:class:`Index`, :class:`Example`);
- local.py / ray_engine.py: the two engines that run the same reduction;
- build.py: :func:`build_index` (resume, incremental update, checkpoints);
- sheet.py: the contact sheet of a channel's examples.
"""
