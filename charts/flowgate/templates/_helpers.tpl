{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "flowgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release name holds it. */}}
{{- define "flowgate.fullname" -}}
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

{{- define "flowgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flowgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flowgate.labels" -}}
helm.sh/chart: {{ include "flowgate.chart" . }}
{{ include "flowgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flowgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flowgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flowgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The shards as a JSON list: one unnamed shard when none are configured. */}}
{{- define "flowgate.shards" -}}
{{- if .Values.shards }}
{{- toJson .Values.shards }}
{{- else }}
{{- toJson (list (dict "name" "")) }}
{{- end }}
{{- end }}

{{/* The config file of one shard (argument: dict "root" . "shard" $shard). */}}
{{- define "flowgate.shardConfig" -}}
{{- $cfg := deepCopy .root.Values.config }}
{{- if .shard.filter }}
{{- $g := get $cfg "goldmane" | default dict }}
{{- $_ := set $g "filter" .shard.filter }}
{{- $_ := set $cfg "goldmane" $g }}
{{- end }}
{{- if .root.Values.persistence.enabled }}
{{- $q := get $cfg "queue" | default dict }}
{{- $_ := set $q "persistent" (dict "dir" "/var/lib/flowgate/queue" "max_bytes" (int64 .root.Values.persistence.queueMaxBytes)) }}
{{- $_ := set $cfg "queue" $q }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Name suffix of a shard's objects. */}}
{{- define "flowgate.shardSuffix" -}}
{{- if .name }}-{{ .name }}{{ end }}
{{- end }}

{{- define "flowgate.transformsConfigMap" -}}
{{- default (printf "%s-transforms" (include "flowgate.fullname" .)) .Values.transforms.existingConfigMap }}
{{- end }}
