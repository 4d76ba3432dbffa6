{{/* The chart's name. */}}
{{- define "orgconnect.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: object names start with it. */}}
{{- define "orgconnect.fullname" -}}
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

{{- define "orgconnect.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "orgconnect.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orgconnect.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "orgconnect.labels" -}}
helm.sh/chart: {{ include "orgconnect.chart" . }}
{{ include "orgconnect.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: orgconnect
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "orgconnect.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "orgconnect.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "orgconnect.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when replicas elect a leader: asked for, or more than one replica. */}}
{{- define "orgconnect.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{- define "orgconnect.leaseName" -}}
{{- default (include "orgconnect.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* host:port for --http-address; an IPv6 host goes in brackets. */}}
{{- define "orgconnect.httpAddress" -}}
{{- if contains ":" .Values.http.host }}
{{- printf "[%s]:%d" .Values.http.host (int .Values.http.port) }}
{{- else }}
{{- printf "%s:%d" .Values.http.host (int .Values.http.port) }}
{{- end }}
{{- end }}
