"""The image-state part of the Predictor API (get/set_image_state, is_current) for test doubles."""


class ImageStateMixin:
    """For fakes that keep ``_features``, ``original_size``, ``input_size``, ``window``, ``image_uint8``."""

    _FIELDS = ("_features", "original_size", "input_size", "window", "image_uint8")

    def get_image_state(self):
        return tuple(getattr(self, name) for name in self._FIELDS)

    def set_image_state(self, state):
        for name, value in zip(self._FIELDS, state):
            setattr(self, name, value)

    def is_current(self, state):
        return self._features is not None and self._features is state[0]
