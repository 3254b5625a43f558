// Renders /openapi.json with the vendored Swagger UI (no CDN).
(function () {
  const script = document.currentScript;
  window.ui = SwaggerUIBundle({
    url: script.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
  });
})();
