{{/* The chart's name: nameOverride or the chart. */}}
{{- define "patroni-rs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: fullnameOverride, or the release (with the name unless it contains it).
It names the StatefulSet, the Services and the Secret, and is the Patroni scope. */}}
{{- define "patroni-rs.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "patroni-rs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the cluster's pods (also Patroni's kubernetes.labels). */}}
{{- define "patroni-rs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "patroni-rs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "patroni-rs.labels" -}}
helm.sh/chart: {{ include "patroni-rs.chart" . }}
{{ include "patroni-rs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: patroni-rs
{{- end }}

{{- define "patroni-rs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "patroni-rs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the existing ServiceAccount to use when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "patroni-rs.secretName" -}}
{{- default (include "patroni-rs.fullname" .) .Values.credentials.existingSecret }}
{{- end }}

{{- define "patroni-rs.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Patroni scope: the full name. */}}
{{- define "patroni-rs.scope" -}}
{{- include "patroni-rs.fullname" . }}
{{- end }}

{{/* Patroni's kubernetes.scope_label (default cluster-name): the pods carry it. */}}
{{- define "patroni-rs.scopeLabel" -}}
{{- dig "kubernetes" "scope_label" "cluster-name" .Values.patroni }}
{{- end }}

{{/* The data directory inside the volume. */}}
{{- define "patroni-rs.dataDir" -}}
{{- printf "%s/pgroot/data" (trimSuffix "/" .Values.persistentVolume.mountPath) }}
{{- end }}
