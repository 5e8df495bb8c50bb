// Swagger UI for /docs, started from a file: the page's Content-Security-Policy runs no inline script.
/* global SwaggerUIBundle */
SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null, // no badge from the online validator: nothing leaves the machine
});
