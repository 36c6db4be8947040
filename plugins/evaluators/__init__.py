"""Built-in evaluators (plugin kind ``evaluators``)."""
