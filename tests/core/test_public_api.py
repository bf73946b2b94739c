"""Every name the public API promises resolves to a real engine object."""
import featurescope as fs


def test_every_public_name_resolves():
    for name in fs.__all__:
        assert getattr(fs, name) is not None, name


def test_api_round_trip_on_the_bundled_cat():
    from featurescope.core.resources import default_sample

    model = fs.load_model("efficientnet_lite0")
    result = fs.capture(model, fs.load_image(default_sample()))
    first = model.layers[0]
    assert result[first].shape == model.layer_info[0].output_shape
    rgb = fs.feature_grid(result[first], colormap="magma")
    assert rgb.dtype.name == "uint8" and rgb.ndim == 3 and rgb.shape[2] == 3
    top = result.predictions(top=1)[0]
    assert top.label in {"Egyptian cat", "tabby", "tiger cat"}
