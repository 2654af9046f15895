"""Every user-visible text of the original management frontend (tests compare them literally).

Schema texts are printed after ``Expected JSON schema: `` in JSON errors, leading newline and odd
indentation included, exactly as the original's constants.
"""

from __future__ import annotations

ADD_APPLICATION_JSON_SCHEMA = """
  {
   "name" := string,
   "input_type" := "integers" | "bytes" | "floats" | "doubles" | "strings",
   "default_output" := string,
   "latency_slo_micros" := int
  }
"""

# added: /admin/update_app (not in the original)
UPDATE_APPLICATION_JSON_SCHEMA = """
  {
   "name" := string,
   "default_output" := string (optional),
   "latency_slo_micros" := int (optional)
  }
"""

ADD_MODEL_LINKS_JSON_SCHEMA = """
  {
    "app_name" := string,
    "model_names" := [string]
  }
"""

DELETE_MODEL_LINKS_JSON_SCHEMA = """
  {
  "app_name" := string,
  "model_names" := [string]
  }
"""

GET_LINKED_MODELS_REQUESTS_SCHEMA = """
  {
    "app_name" := string
  }
"""

VERBOSE_OPTION_JSON_SCHEMA = """
  {
    "verbose" := bool
  }
"""

GET_APPLICATION_REQUESTS_SCHEMA = """
  {
    "name" := string
  }
"""

GET_MODEL_REQUESTS_SCHEMA = """
  {
    "model_name" := string,
    "model_version" := string
  }
"""

GET_CONTAINER_REQUESTS_SCHEMA = """
  {
    "model_name" := string,
    "model_version" := string,
    "replica_id" := int
  }
"""

ADD_MODEL_JSON_SCHEMA = """
  {
   "model_name" := string,
   "model_version" := string,
   "labels" := [string],
   "input_type" := "integers" | "bytes" | "floats" | "doubles" | "strings",
   "container_name" := string,
   "model_data_path" := string
  }
"""

DELETE_VERSIONED_MODEL_JSON_SCHEMA = """
  {
   "model_name" := string,
   "model_version" := string,
  }
"""

SET_VERSION_JSON_SCHEMA = """
  {
   "model_name" := string,
   "model_version" := string,
  }
"""

SELECTION_JSON_SCHEMA = """
  {
   "app_name" := string,
   "uid" := int,
  }
"""

PONG = "PONG"


def json_error(msg: str, schema: str) -> str:
    return f"Error parsing JSON: {msg}. Expected JSON schema: {schema}"


# -- JSON getters (json_util.cpp) ---------------------------------------------------------------
NOT_AN_OBJECT = "Can only get key-value pair from an object"


def missing_key(key: str) -> str:
    return f"JSON object does not have required key: {key}"


def type_mismatch(key: str, expected: str, found: str) -> str:
    # sic: no space before "but" (the original's text)
    return f"Type mismatch! JSON key {key} expected type {expected}but found type {found}"


def bool_mismatch(key: str, found: str) -> str:
    return f"Type mismatch! JSON key {key} expected type bool but found type {found}"


def not_int(found: str) -> str:
    return f"PredictionData of type {found} is not of type int"


def array_elem_not_string(found: str) -> str:
    return f"Array input of type {found} is not of type string"


def parse_error(what: str, offset: int) -> str:
    return f"JSON parse error: {what} (offset {offset})\n"


def invalid_input_type(text: str) -> str:
    return f"{text} is not a valid input string"


def invalid_group_string(label: str, value: str) -> str:
    return f"Invalid {label} supplied: {value}. Contains one of: ',', ':'"


# -- add_app / delete_app -------------------------------------------------------------------------
def app_added(name: str) -> str:
    return f"Successfully added application with name '{name}'"


def app_exists(name: str) -> str:
    return f"application '{name}' already exists"


def app_add_failed(name: str) -> str:
    return f"Error adding application '{name}' to Redis"


def app_deleted(name: str) -> str:
    return f"Successfully deleted application with name '{name}'"


def app_missing(name: str) -> str:
    return f"Application '{name}' does not exist"


def app_delete_failed(name: str) -> str:
    return f"Error deleting application '{name}' to Redis"  # sic


# -- update_app (added) ---------------------------------------------------------------------------
def app_updated(name: str) -> str:
    return f"Successfully updated application with name '{name}'"


def app_update_nothing(name: str) -> str:
    return f"Nothing to update for application '{name}': give default_output and/or latency_slo_micros"


def app_update_failed(name: str) -> str:
    return f"Error updating application '{name}' in the config store"


# -- links ----------------------------------------------------------------------------------------
def link_no_app(app: str) -> str:
    return f"No app with name '{app}' exists."


def link_no_model(model: str) -> str:
    return f"No model with name '{model}' exists."


def link_incompatible(model: str, model_type: str, app_type: str) -> str:
    return (
        f"Model with name '{model}' has incompatible input_type '{model_type}'. "
        f"Requested app to link to has input_type '{app_type}'."
    )


def link_none_given(app: str) -> str:
    return f"Please provide the name of the model that you want to link to the application '{app}'"


def link_too_many(n: int) -> str:
    return f"Applications must be linked with at most one model. Attempted to add links to {n} models."


def link_same_exists(model: str, app: str) -> str:
    return f"The model with name '{model}' is already linked to '{app}'"


def link_other_exists(existing: str, app: str) -> str:
    return f"A model with name {existing} is already linked to '{app}'."


def linked(model: str, app: str) -> str:
    return f"Successfully linked model with name '{model}' to application '{app}'"


def link_failed(app: str) -> str:
    return f"Error linking models to '{app}' in Redis"


def unlink_no_app(app: str) -> str:
    return f"No app with name {app} exists."


def unlink_missing(app: str, model: str) -> str:
    return f"Cannot remove nonexistent link between app {app} and model {model}"


UNLINKED = "Success!"


def unlink_failed(app: str) -> str:
    return f"Error deleting linked models from {app} in Redis"


def no_application(app: str) -> str:
    return f"No application with name '{app}' exists."


# -- models ---------------------------------------------------------------------------------------
BAD_BATCH_SIZE = "The batch size must be positive or DEFAULT_BATCH_SIZE, which is -1"


def model_exists(name: str, version: str) -> str:
    return f"model with name '{name}' and version '{version}' already exists"


def model_inconsistent(name: str, app: str, app_type: str, new_type: str) -> str:
    return (
        f"Model with name '{name}' is already linked to app '{app}' using input type '{app_type}'. "
        f"The input type you provided for a new version of the model, '{new_type}', is not compatible."
    )


def model_added(name: str, input_type: str) -> str:
    return f"Successfully added model with name '{name}' and input type '{input_type}'"


def model_add_failed(name: str, version: str) -> str:
    return f"Error adding model {name}:{version} to Redis"


def version_update_failed(name: str, version: str) -> str:
    return f"Version '{version}' does not exist for model with name'{name}'"  # sic


def set_version_no_model(name: str) -> str:
    return f"Cannot set version for nonexistent model '{name}'"


def set_version_no_version(name: str, version: str) -> str:
    return f"Cannot set non-existent version '{version}' for model with name '{name}'"


def version_set(name: str, version: str) -> str:
    return f"Successfully set model with name '{name}' to version '{version}'"


def model_missing(name: str, version: str) -> str:
    return f"model with name '{name}' and version '{version}' does not exist"


def model_already_invalid(name: str, version: str) -> str:
    return f"model with name '{name}' and version '{version}' is already marked as 'invalid'"


def model_deleted(name: str, version: str) -> str:
    return f"Successfully deleted model with name '{name}' and version '{version}'"


def model_delete_failed(name: str, version: str) -> str:
    return f"Error deleting model with name '{name}' and version '{version}' from Redis"
