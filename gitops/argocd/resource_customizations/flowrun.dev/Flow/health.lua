-- Health of a flowrun.dev Flow, from the conditions the flowrun-operator writes when it validates
-- the Flow: Ready=True (it passes every check of a run's spec) is Healthy, Stalled=True (invalid,
-- naming the field) is Degraded, a generation not validated yet is Progressing. Only the base and
-- table libraries are used (argocd-cm runs it with the others closed).
local hs = {}

local function find(conditions, kind)
  for _, condition in ipairs(conditions or {}) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local status = obj.status or {}
if status.observedGeneration == nil or status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the flowrun-operator to validate this generation"
  return hs
end

local stalled = find(status.conditions, "Stalled")
local ready = find(status.conditions, "Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
else
  hs.status = "Progressing"
  hs.message = "Waiting for the flowrun-operator"
end
return hs
