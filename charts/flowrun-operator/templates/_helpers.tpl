{{/* Chart name, truncated to a DNS label. */}}
{{- define "flowrun-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name, with the chart name unless the release name contains it. */}}
{{- define "flowrun-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "flowrun-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "flowrun-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowrun-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* On every object the chart creates: `helm uninstall` leaves nothing with these labels. */}}
{{- define "flowrun-operator.labels" -}}
helm.sh/chart: {{ include "flowrun-operator.chart" . }}
{{ include "flowrun-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "flowrun-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flowrun-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "flowrun-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces a namespace-scoped operator watches (a JSON list). */}}
{{- define "flowrun-operator.watchNamespaces" -}}
{{- if eq .Values.rbac.scope "cluster" -}}
{{- if .Values.watchNamespaces -}}
{{- fail "watchNamespaces must be empty with rbac.scope=cluster (the operator watches every namespace); use rbac.scope=namespaces to watch only some" -}}
{{- end -}}
[]
{{- else -}}
{{- default (list .Release.Namespace) .Values.watchNamespaces | uniq | toJson -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does in a namespace it serves (the same rules cluster-wide or per namespace).
Every verb is one the operator uses (kopf serves no resource); docs/install.md explains each rule.
*/}}
{{- define "flowrun-operator.namespacedRules" -}}
# FlowRuns: the operator lists and watches them (its passes read them from that cache), patches
# its finalizer in and out, reads the original of a rerun once, and deletes a run after
# ttlSecondsAfterFinished. For CronFlowRuns it creates their runs, cancels one (a patch of
# spec.cancel, concurrencyPolicy Replace) and deletes those over the history limits.
- apiGroups: [flowrun.dev]
  resources: [flowruns]
  verbs: [get, list, watch, create, patch, delete]
# Status is written with merge patches.
- apiGroups: [flowrun.dev]
  resources: [flowruns/status]
  verbs: [patch]
# Children carry an owner reference with blockOwnerDeletion (and so do the runs of a
# CronFlowRun): clusters running the OwnerReferencesPermissionEnforcement admission plugin
# require this.
- apiGroups: [flowrun.dev]
  resources: [flowruns/finalizers, cronflowruns/finalizers]
  verbs: [update]
# Flows are watched (runs with flowRef resolve them from that cache) and read again when one is
# validated; CronFlowRuns are watched and read at each pass. Neither gets a finalizer or an
# annotation from the operator: it never patches them.
- apiGroups: [flowrun.dev]
  resources: [flows, cronflowruns]
  verbs: [get, list, watch]
# Their status (SpecValid; the schedule's status) is written with merge patches.
- apiGroups: [flowrun.dev]
  resources: [flows/status, cronflowruns/status]
  verbs: [patch]
# Children: task pods, setup Deployments and their Services (watched, created, server-side
# dry-run created, read on a name conflict, deleted by cleanup).
- apiGroups: [""]
  resources: [pods, services]
  verbs: [get, list, watch, create, delete]
# The last log lines of failed or cancelled tasks are copied into status.
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# A task's result moves to a ConfigMap of its own (owned by its run, never changed, gone with the
# run) when the run's status is full; the operator watches those it made (label selector).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create]
# Setup and cleanup Jobs.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# Setup Deployments (a Dask scheduler, its workers).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, delete]
# Locks across runs (spec.synchronization, tasks[].synchronization): one Lease per held slot in the
# run's namespace, labelled flowrun.dev/role=lock (watched, created if absent, read on a name
# conflict, deleted when its holder is done; owned by its run). A semaphore's ConfigMap is
# watched by name (the configmaps rule above).
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, delete]
# The EndpointSlices of those Deployments' Services (the EndpointSlice controller makes and deletes
# them): watched, as a block is Ready only once each of its Services has a ready endpoint.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
# An Event on the FlowRun for every transition, on a Flow that is invalid, on a CronFlowRun for
# each run it creates, replaces or deletes (core/v1 Events). Listed
# only for a setup or cleanup Job that has had no pod for a while (its FailedCreate Event says why
# its pod is refused), by a field selector naming that Job, at most every 10 seconds.
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
{{- with .Values.rbac.extraRules }}
# rbac.extraRules: the kinds of setup.manifests.
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
"true" when the replicas elect a leader through a Lease: leaderElection.enabled, else (null) when
there is more than one replica. Fails on values under which two operators would both act, or
under which a leader could still act after another took over.
*/}}
{{- define "flowrun-operator.leaderElection" -}}
{{- $many := gt (int .Values.replicas) 1 -}}
{{- $enabled := .Values.leaderElection.enabled -}}
{{- if kindIs "invalid" $enabled -}}
{{- $enabled = $many -}}
{{- end -}}
{{- if and $many (not $enabled) -}}
{{- fail "replicas > 1 needs leaderElection.enabled (null or true): two operators without it would both act on the same FlowRuns" -}}
{{- end -}}
{{- $election := .Values.leaderElection -}}
{{- if and $enabled (not (and (gt (int $election.leaseDurationSeconds) (int $election.renewDeadlineSeconds)) (gt (int $election.renewDeadlineSeconds) (int $election.retryPeriodSeconds)))) -}}
{{- fail "leaderElection needs leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds: a leader must stop acting before another may take over" -}}
{{- end -}}
{{- if $enabled -}}true{{- end -}}
{{- end -}}

{{- define "flowrun-operator.leaseName" -}}
{{- default (include "flowrun-operator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}
