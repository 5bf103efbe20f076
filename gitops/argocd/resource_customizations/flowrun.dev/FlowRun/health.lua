-- Health of a flowrun.dev FlowRun, from the conditions the flowrun-operator writes: Stalled=True
-- (the run failed or was cancelled, or its spec is invalid, or a failed cleanup holds its deletion)
-- is Degraded, Ready=True (the run succeeded) is Healthy, anything else (pending, running, cleaning
-- up, deleting) is Progressing, each with the operator's message. So is a generation the operator
-- has not seen yet. (Argo CD runs it on an object being deleted only while its hook finalizer is
-- on; otherwise it says "Pending deletion" itself.) Only the base and table libraries are used
-- (argocd-cm runs it with the others closed).
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
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
elseif ready ~= nil then
  hs.status = "Progressing"
  hs.message = ready.message
else
  hs.status = "Progressing"
  hs.message = "Waiting for the flowrun-operator"
end
return hs
