"""The atlas: every unit of a model on one static site (feature visualisations, dataset
examples, labels from the folder's sub-folders, the units that feed it), built locally or
on Ray. ``labels`` names units from an index, ``units`` computes their pictures,
``site`` writes the HTML and JSON, ``build`` puts them together."""
