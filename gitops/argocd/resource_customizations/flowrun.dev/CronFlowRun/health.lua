-- Health of a flowrun.dev CronFlowRun, from the conditions the flowrun-operator writes: Stalled=True
-- (its spec is invalid, or the API server refused the run it created) is Degraded; Ready=True is
-- Suspended when the reason is Suspended (spec.suspend, as the operator last saw it) and Healthy
-- otherwise (it schedules; the message says when the next run is); a generation the operator has
-- not seen yet is Progressing. The health of its runs is theirs (each FlowRun's own check). Only
-- the base and table libraries are used (argocd-cm runs it with the others closed).
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
  hs.message = "Waiting for the flowrun-operator to look at this generation"
  return hs
end

local stalled = find(status.conditions, "Stalled")
local ready = find(status.conditions, "Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
elseif ready ~= nil and ready.status == "True" and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = ready.message
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
else
  hs.status = "Progressing"
  hs.message = "Waiting for the flowrun-operator"
end
return hs
