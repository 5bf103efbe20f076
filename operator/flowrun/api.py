"""Names and keys of the flowrun.dev API shared by the operator's modules."""

GROUP = "flowrun.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FlowRun"
PLURAL = "flowruns"

FINALIZER = "flowrun.dev/cleanup"
SKIP_CLEANUP_ANNOTATION = "flowrun.dev/skip-cleanup"

LABEL_FLOWRUN = "flowrun.dev/flowrun"
LABEL_UID = "flowrun.dev/flowrun-uid"
LABEL_ROLE = "flowrun.dev/role"
LABEL_TASK = "flowrun.dev/task"
LABEL_RESOURCE = "flowrun.dev/resource"
LABEL_ATTEMPT = "flowrun.dev/attempt"
LABEL_DEPLOYMENT = "flowrun.dev/deployment"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "flowrun-operator"

ROLE_TASK = "task"
ROLE_SETUP = "setup"
ROLE_CLEANUP = "cleanup"
