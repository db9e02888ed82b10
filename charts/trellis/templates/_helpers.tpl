{{/*
Shared naming and labelling. Component templates live in templates/<component>/ and call these
with a dict: (dict "root" $ "component" "network").
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "trellis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every resource name: <release>-trellis, or fullnameOverride. */}}
{{- define "trellis.fullname" -}}
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

{{/* Name of one component's objects: <fullname>-<component>. */}}
{{- define "trellis.componentName" -}}
{{- printf "%s-%s" (include "trellis.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trellis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels selecting the chart's pods; stable across upgrades. */}}
{{- define "trellis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trellis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels for every object; global.commonLabels last so users can add their own. */}}
{{- define "trellis.labels" -}}
helm.sh/chart: {{ include "trellis.chart" . }}
{{ include "trellis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trellis
{{- with .Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "network"). */}}
{{- define "trellis.componentSelectorLabels" -}}
{{ include "trellis.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's objects: (dict "root" $ "component" "network"). */}}
{{- define "trellis.componentLabels" -}}
{{ include "trellis.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* ServiceAccount of one component: (dict "root" $ "component" "network"). */}}
{{- define "trellis.serviceAccountName" -}}
{{- include "trellis.componentName" . -}}
{{- end -}}

{{/* Image of one component: its own image settings over global.image; tag defaults to appVersion. */}}
{{- define "trellis.image" -}}
{{- $values := index .root.Values .component -}}
{{- $image := merge (deepCopy (default dict $values.image)) .root.Values.global.image -}}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/* Pull policy of one component's image. */}}
{{- define "trellis.imagePullPolicy" -}}
{{- $values := index .root.Values .component -}}
{{- (merge (deepCopy (default dict $values.image)) .root.Values.global.image).pullPolicy -}}
{{- end -}}

{{/* imagePullSecrets block for a pod spec (empty when none). */}}
{{- define "trellis.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An image built next to the Trellis image (same registry directory and tag): (dict "root" $ "name" "dnsmasq"). */}}
{{- define "trellis.siblingImage" -}}
{{- $image := .root.Values.global.image -}}
{{- printf "%s/%s:%s" (dir $image.repository) .name (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}
