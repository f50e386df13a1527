"""One router module per resource: predict, models, health, tf_serving."""
